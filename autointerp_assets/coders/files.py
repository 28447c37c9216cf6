"""Where a coder's files are: a local path, any fsspec URL (s3://...), or a hub id."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from .base import SparseCoderError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(#.+)?$")


@dataclass(frozen=True)
class Location:
    """A directory reachable through fsspec (local, s3://, or a hub snapshot on local disk)."""

    fs: fsspec.AbstractFileSystem
    base: str
    uri: str  # as the user wrote it, for messages

    def exists(self, name: str) -> bool:
        return self.fs.isfile(f"{self.base}/{name}")

    def read(self, name: str) -> bytes:
        return self.fs.cat_file(f"{self.base}/{name}")

    def listing(self) -> list[str]:
        if not self.fs.isdir(self.base):
            return []
        return sorted(os.path.basename(p.rstrip("/")) for p in self.fs.ls(self.base, detail=False))


def locate(path: str, store_options: dict[str, Any] | None) -> Location:
    """Local path, any fsspec URL (s3://...), or a hub id 'org/repo' / 'org/repo#subfolder'."""
    if "://" in path or Path(path).expanduser().exists() or not _HUB_ID.match(path):
        fs, base = fsspec.core.url_to_fs(os.path.expanduser(path), **(store_options or {}))
        return Location(fs, base.rstrip("/"), path)
    from huggingface_hub import snapshot_download

    repo_id, _, sub = path.partition("#")
    sub = sub.strip("/")
    try:
        local = snapshot_download(repo_id, allow_patterns=[sub, f"{sub}/*"] if sub else None)
    except Exception as e:
        raise SparseCoderError(
            f"'{path}' is not a local path, so it was read as a hub id, and downloading '{repo_id}' failed: "
            f"{type(e).__name__}: {e}. Offline, point `path` at a local directory or an s3:// URL."
        ) from e
    fs, base = fsspec.core.url_to_fs(os.path.join(local, sub) if sub else local)
    return Location(fs, base.rstrip("/"), path)


def missing(loc: Location, wanted: str, fix: str) -> SparseCoderError:
    found = loc.listing()
    listing = ", ".join(found[:20]) if found else "nothing (missing or empty)"
    return SparseCoderError(f"no {wanted} at {loc.uri} (found: {listing}); {fix}")

