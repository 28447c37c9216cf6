"""Where a coder's files are (a local path, any fsspec URL such as s3://..., or a hub id), and
reading them so that a malformed file fails with its name and the fix, never half-loaded."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor

from .base import SparseCoderError

_REFETCH = "the file is truncated or corrupt; copy or download it again"

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



def read_json(loc: Location, name: str) -> dict[str, Any]:
    """A JSON object file (cfg.json); anything else is a clear error."""
    try:
        value = json.loads(loc.read(name))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SparseCoderError(f"{name} at {loc.uri} is not valid JSON ({e}); {_REFETCH}") from None
    if not isinstance(value, dict):
        raise SparseCoderError(f"{name} at {loc.uri} holds a JSON {type(value).__name__}, not an object; {_REFETCH}")
    return value


def read_tensors(loc: Location, name: str) -> dict[str, Tensor]:
    """The tensors of a .safetensors or .npz file (numpy arrays become tensors)."""
    data = loc.read(name)
    try:
        if name.endswith(".npz"):
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {key: torch.from_numpy(np.array(npz[key])) for key in npz.files}
        return safetensors.torch.load(data)
    except (safetensors.SafetensorError, zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        kind = "an .npz archive" if name.endswith(".npz") else "a safetensors file"
        raise SparseCoderError(f"{name} at {loc.uri} cannot be read as {kind} ({type(e).__name__}: {e}); "
                               f"{_REFETCH}") from None


def config_value(cfg: dict[str, Any], key: str, loc: Location, name: str = "cfg.json") -> Any:
    if key not in cfg:
        raise SparseCoderError(f"{name} at {loc.uri} has no '{key}' (keys: {sorted(cfg)}); it is not the format "
                               "this coder kind reads, or the file is incomplete")
    return cfg[key]


def require_tensors(tensors: dict[str, Tensor], keys: tuple[str, ...], loc: Location, name: str, what: str) -> None:
    absent = [key for key in keys if key not in tensors]
    if absent:
        raise SparseCoderError(f"{name} at {loc.uri} lacks {absent} (has {sorted(tensors)}); it is not {what}")
