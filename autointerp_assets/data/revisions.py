"""Revisions of models and sparse coders, for lineage and the model-update sensor.

Online, a hub id's revision is its commit sha. Offline, it is a content hash of the
local or S3 path: sha256 of every file's bytes locally (memoised on size+mtime, so a
sensor tick over unchanged multi-GB files costs a stat), the ETags on S3 (which are
the stores' own content hashes).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import fsspec


@lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def local_content_hash(path: str | os.PathLike) -> str:
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{root} does not exist or holds no files")
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        rel = f.name if f == root else str(f.relative_to(root))
        digest.update(f"{rel}:{_file_sha256(str(f), st.st_size, st.st_mtime_ns)}\n".encode())
    return digest.hexdigest()[:16]


def remote_content_hash(url: str, storage_options: dict | None = None) -> str:
    fs, base = fsspec.core.url_to_fs(url, **(storage_options or {}))
    infos = [fs.info(base)] if fs.isfile(base) else [fs.info(p) for p in sorted(fs.find(base))]
    if not infos:
        raise FileNotFoundError(f"{url} does not exist or holds no files")
    digest = hashlib.sha256()
    for info in infos:
        tag = info.get("ETag") or info.get("etag") or f"{info.get('size')}:{info.get('LastModified')}"
        digest.update(f"{info['name']}:{tag}\n".encode())
    return digest.hexdigest()[:16]


def hub_revision(repo_id: str, revision: str | None = None) -> str:
    from huggingface_hub import HfApi

    return HfApi().model_info(repo_id, revision=revision).sha or "unknown"


def revision_of(source: str, storage_options: dict | None = None, hub_revision_hint: str | None = None) -> str:
    """Content hash for local and remote paths; hub commit sha for anything else."""
    if "://" in source:
        return remote_content_hash(source, storage_options)
    if Path(source).expanduser().exists():
        return local_content_hash(Path(source).expanduser())
    return hub_revision(source, hub_revision_hint)
