"""Where a coder's files are: a local path, any fsspec URL (s3://...), or a hub id."""

from __future__ import annotations

import json
import os
import re
import struct
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

    def where(self, name: str) -> str:
        """The file as the user would find it, for messages."""
        return f"{self.uri.rstrip('/')}/{name}"

    def read_json(self, name: str) -> dict[str, Any]:
        try:
            value = json.loads(self.read(name))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SparseCoderError(f"{self.where(name)} is not valid JSON ({e}); restore the file from where the "
                                   "coder came from (or retrain it)") from None
        if not isinstance(value, dict):
            raise SparseCoderError(f"{self.where(name)} holds a JSON {type(value).__name__}, not an object; restore "
                                   "the file from where the coder came from")
        return value

    def safetensors_shapes(self, name: str) -> dict[str, list[int]]:
        """Tensor shapes from a safetensors header, checked against the file size: a truncated or
        corrupt file is caught without reading its data."""
        corrupt = (f"{self.where(name)} is truncated or not a safetensors file; re-download or re-save it "
                   "(a trained SAE: re-materialise sparse_coder)")
        path = f"{self.base}/{name}"
        size = self.fs.size(path)
        with self.fs.open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise SparseCoderError(corrupt)
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise SparseCoderError(corrupt)
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise SparseCoderError(corrupt) from None
        tensors = {k: v for k, v in header.items() if k != "__metadata__"} if isinstance(header, dict) else None
        try:
            end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)  # type: ignore[union-attr]
            shapes = {k: list(v["shape"]) for k, v in tensors.items()}  # type: ignore[union-attr]
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            raise SparseCoderError(corrupt) from None
        if 8 + n + end > size:
            raise SparseCoderError(f"{self.where(name)} is truncated: its header describes {8 + n + end} bytes, the file "
                                   f"has {size}; re-download or re-save it (a trained SAE: re-materialise sparse_coder)")
        return shapes

    def read_safetensors(self, name: str) -> dict:
        import safetensors.torch

        self.safetensors_shapes(name)  # a clear error for a truncated file
        try:
            return safetensors.torch.load(self.read(name))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise SparseCoderError(f"{self.where(name)} cannot be read as safetensors ({e}); re-download or "
                                   "re-save it") from None

    def listing(self) -> list[str]:
        if not self.fs.isdir(self.base):
            return []
        return sorted(os.path.basename(p.rstrip("/")) for p in self.fs.ls(self.base, detail=False))


def is_hub_id(path: str) -> bool:
    return "://" not in path and not Path(path).expanduser().exists() and bool(_HUB_ID.match(path))


def locate(path: str, store_options: dict[str, Any] | None) -> Location:
    """Local path, any fsspec URL (s3://...), or a hub id 'org/repo' / 'org/repo#subfolder'."""
    if not is_hub_id(path):
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



def require_tensors(tensors: dict[str, Any], keys: tuple[str, ...], loc: Location, name: str, what: str) -> None:
    absent = [key for key in keys if key not in tensors]
    if absent:
        raise SparseCoderError(f"{loc.where(name)} lacks {absent} (has {sorted(tensors)}); it is not {what}")
