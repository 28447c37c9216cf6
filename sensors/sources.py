"""What the observable sources watch, and the revision of each. No Dagster here.

- The subject model: every layer depends on it. A content hash of its local/S3 files
  (the GGUF for the built-in default), or the hub commit sha.
- Each layer's coder. A coder loaded from files is versioned by the files its loader reads,
  and only those: a README edit, or another layer's SAE in the same hub repository, changes
  nothing. Trained (`train_topk`) and `neurons` coders are versioned by their settings, so
  changing one layer's training recipe makes only that layer unsynced.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from autointerp_assets.config import JumpReLUCoderConfig, ProjectConfig, TopKCoderConfig
from autointerp_assets.data.model_files import revision_source
from autointerp_assets.data.revisions import local_content_hash, remote_content_hash, revision_of

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(#.+)?$")  # as coders/files.py reads a path

# The files each loader reads (coders/topk.py, coders/saelens.py); a missing optional one is skipped.
CODER_FILES: dict[str, tuple[str, ...]] = {
    "topk": ("cfg.json", "sae.safetensors"),
    "jumprelu": ("cfg.json", "params.npz", "sae_weights.safetensors"),
}

# (repo id, revision or None, paths in the repo) -> {path: blob id or LFS sha256} of those that exist
HubListing = Callable[[str, "str | None", list[str]], dict[str, str]]


def subject_revision(cfg: ProjectConfig) -> str:
    return revision_of(revision_source(cfg.subject_model.id), None, cfg.subject_model.revision)


def files_digest(files: Mapping[str, str]) -> str:
    """One revision for a set of files: their names and content ids, order-free."""
    return hashlib.sha256("".join(f"{name}:{files[name]}\n" for name in sorted(files)).encode()).hexdigest()[:16]


def hub_listing(repo_id: str, revision: str | None, paths: list[str]) -> dict[str, str]:
    from huggingface_hub import HfApi

    infos = HfApi().get_paths_info(repo_id, paths, revision=revision)
    return {i.path: (i.lfs.sha256 if getattr(i, "lfs", None) else i.blob_id) for i in infos if hasattr(i, "blob_id")}


def is_hub_id(path: str) -> bool:
    return "://" not in path and not Path(path).expanduser().exists() and bool(_HUB_ID.match(path))


def file_revision(uri: str, storage_options: dict | None = None) -> str:
    """Content hash of one local or remote file; FileNotFoundError when it is not there."""
    if "://" in uri:
        return remote_content_hash(uri, storage_options)
    path = Path(uri).expanduser()
    if not path.is_file():
        raise FileNotFoundError(uri)
    return local_content_hash(path)


def coder_revision(coder, storage_options: dict | None = None, listing: HubListing = hub_listing) -> str:
    """The revision of one configured coder (see the module docstring)."""
    if not isinstance(coder, TopKCoderConfig | JumpReLUCoderConfig):
        return "config:" + hashlib.sha256(coder.model_dump_json().encode()).hexdigest()[:16]
    names = CODER_FILES[coder.kind]
    if is_hub_id(coder.path):
        repo_id, _, sub = coder.path.partition("#")
        sub = sub.strip("/")
        files = listing(repo_id, None, [f"{sub}/{n}" if sub else n for n in names])
        if not files:
            raise FileNotFoundError(f"none of {list(names)} under '{coder.path}' on the hub")
        return files_digest(files)
    files = {}
    for name in names:
        try:
            files[name] = file_revision(f"{coder.path.rstrip('/')}/{name}", storage_options)
        except FileNotFoundError:
            continue
    if not files:
        raise FileNotFoundError(f"none of {list(names)} under '{coder.path}'")
    return files_digest(files)


def coder_revisions(cfg: ProjectConfig, layers: list[str], storage_options: dict | None = None,
                    listing: HubListing = hub_listing) -> tuple[dict[str, str], dict[str, str]]:
    """({layer: revision}, {layer: error}). One unreadable coder (hub offline, path gone) is
    reported, not raised, so the others are still observed."""
    revisions, errors = {}, {}
    for layer in layers:
        try:
            revisions[layer] = coder_revision(cfg.hookpoints[layer], storage_options, listing)
        except Exception as e:  # noqa: BLE001 - reported per layer in the observation's log
            errors[layer] = f"{type(e).__name__}: {e}"
    return revisions, errors

