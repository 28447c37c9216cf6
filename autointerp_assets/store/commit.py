"""Versioned file sets committed by swapping one small manifest.

    <dir>/manifest.json        the commit: the current version, its files, its metadata
    <dir>/<version>/...        immutable files of one version, written by one run

A writer puts every file of its version under a fresh directory (`new_version()`), then swaps
the manifest (`Dataset.commit`: a compare-and-swap through `ArtifactStore.update_json`). A
reader resolves the manifest once and reads only the files it names, so it sees the whole old
set or the whole new set: never a partial file, never a mismatched pair. Two writers never
touch each other's files; the last commit wins and both leave a consistent dataset.

Garbage collection runs after every commit and never deletes what the manifest references:
- a superseded version is deleted once it has been superseded for `retention_s`, so a reader
  that resolved the previous manifest has that long to finish;
- a version directory that was never committed (a crashed writer, or one still running) is
  deleted once its newest file is older than `orphan_after_s`.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .store import ArtifactStore

MANIFEST = "manifest.json"
_VERSION = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


class MissingUpstreamError(RuntimeError):
    pass


class VersionGoneError(RuntimeError):
    """A version's files were deleted while in use (garbage-collected after its retention)."""


def new_version() -> str:
    """Sortable and unique: UTC start time plus a random tag."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Dataset:
    store: ArtifactStore
    dir: str  # relative to the store root
    what: str = ""  # what produces it, for error messages, e.g. "activations[layers.6]"

    @property
    def retention_s(self) -> float:
        return self.store.retention_s

    @property
    def orphan_after_s(self) -> float:
        return self.store.orphan_after_s

    @property
    def manifest_path(self) -> str:
        return f"{self.dir}/{MANIFEST}"

    def path(self, version: str, name: str) -> str:
        """Where a file of `version` is written, relative to the store root."""
        return f"{self.dir}/{version}/{name}"

    def exists(self) -> bool:
        return self.store.exists(self.manifest_path)

    def read(self) -> dict[str, Any]:
        if not self.store.exists(self.manifest_path):
            raise MissingUpstreamError(
                f"{self.store.uri(self.manifest_path)} is missing; materialise {self.what or self.dir} first")
        manifest = self.store.read_json(self.manifest_path)
        if "version" not in manifest:
            raise MissingUpstreamError(
                f"{self.store.uri(self.manifest_path)} is in an older layout; re-materialise {self.what or self.dir}")
        return manifest

    def file(self, manifest: dict[str, Any], name: str) -> str:
        """Root-relative path of file `name` of the committed version."""
        return f"{self.dir}/{manifest['files'][name]}"

    def read_file(self, manifest: dict[str, Any], name: str) -> bytes:
        rel = self.file(manifest, name)
        try:
            return self.store.read_bytes(rel)
        except FileNotFoundError:
            raise VersionGoneError(
                f"{self.store.uri(rel)} vanished: version {manifest['version']} was replaced and garbage-collected "
                "while this run read it; re-run this step") from None

    def commit(self, version: str, files: dict[str, str], meta: dict[str, Any] | None = None,
               has_files: bool | None = None) -> dict[str, Any]:
        """Make `version` current. `files` maps names to paths relative to the version directory;
        `has_files` says the version directory must exist (default: when `files` names any).
        Returns the manifest written."""
        if (bool(files) if has_files is None else has_files) and not self.store.exists(f"{self.dir}/{version}"):
            raise VersionGoneError(f"{self.store.uri(f'{self.dir}/{version}')} is gone (garbage-collected after "
                                   f"{self.orphan_after_s:.0f} s without a write); re-run this step")
        now = time.time()

        def swap(current: dict[str, Any] | None) -> dict[str, Any]:
            superseded = list((current or {}).get("superseded", []))
            if current and current.get("version") not in (None, version):
                superseded.append({"version": current["version"], "at": now})
            return {**(meta or {}), "version": version, "committed_at": now,
                    "files": {name: f"{version}/{rel}" for name, rel in files.items()}, "superseded": superseded}

        manifest = self.store.update_json(self.manifest_path, swap)
        self.collect_garbage(manifest)
        return manifest

    def collect_garbage(self, manifest: dict[str, Any] | None = None, now: float | None = None) -> list[str]:
        """Delete expired superseded versions and stale uncommitted ones; returns what was deleted."""
        now = time.time() if now is None else now
        manifest = manifest or (self.store.read_json(self.manifest_path) if self.exists() else None)
        superseded = (manifest or {}).get("superseded", [])
        expired = {s["version"] for s in superseded if now - s["at"] >= self.retention_s}
        for version in sorted(expired):
            self.store.delete(f"{self.dir}/{version}")
        if expired:
            self.store.update_json(self.manifest_path, lambda m: {
                **m, "superseded": [s for s in m.get("superseded", []) if s["version"] not in expired]})
        known = {s["version"] for s in superseded} | ({manifest["version"]} if manifest else set())
        orphans = []
        for rel in self.store.list_dirs(self.dir):
            name = rel.rsplit("/", 1)[-1]
            if not _VERSION.match(name) or name in known:
                continue
            newest = self.store.newest_mtime(rel)
            # An empty directory may be a writer that has just begun: left alone, it costs nothing.
            if newest is not None and now - newest >= self.orphan_after_s:
                self.store.delete(rel)
                orphans.append(name)
        return sorted(expired) + orphans
