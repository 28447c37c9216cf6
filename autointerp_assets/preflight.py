"""Checks before a run, so bad input fails before any model loads, any partition is registered
or anything is written: storage writability, the device, the model and coder files, the corpus
paths, the API key and the LLM endpoint. Each raises a `UserError` naming the field and the fix.

- `check_at_load`: the cheap local checks, whenever the code location loads (with the config);
- `check_project`: all of them, by the CLI before it touches the Dagster instance;
- every asset checks storage (and the LLM assets the endpoint) when its step starts.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import fsspec

from .coders import check_coder_files
from .config import LLMConfig, ProjectConfig
from .errors import StorageError, UserError

_PROBE = ".autointerp-write-check-"


def check_storage_writable(root: str, storage_options: dict | None = None) -> None:
    """Creating entries under `root` works; leaves nothing behind (a probe is made and removed)."""
    if "://" in root and not root.startswith("file://"):
        _check_remote_writable(root, storage_options or {})
        return
    path = Path(root.removeprefix("file://")).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the directories a write would create start here
    if not existing.is_dir():
        raise StorageError(f"storage_root '{root}': {existing} is a file, not a directory; point storage_root at a "
                           "directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_PROBE, dir=existing))
    except OSError as e:
        where = "" if existing == path else f" (it does not exist, and {existing} does not allow creating it)"
        raise StorageError(f"storage_root '{root}' is not writable{where}: {e.strerror}; choose a writable "
                           "directory, fix its permissions, or use s3://bucket/prefix") from None


def _check_remote_writable(root: str, storage_options: dict) -> None:
    try:
        fs, base = fsspec.core.url_to_fs(root, **storage_options)
        probe = f"{base.rstrip('/')}/{_PROBE}{uuid.uuid4().hex}"
        fs.pipe_file(probe, b"")
        fs.rm(probe)
    except Exception as e:  # noqa: BLE001 - s3fs/botocore raise many kinds; all mean "cannot write here"
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise StorageError(f"storage_root '{root}' is not writable ({type(e).__name__}: {detail}); create the bucket, "
                           "or fix the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and "
                           "the storage root") from None


def check_corpus_paths(cfg: ProjectConfig, storage_options: dict | None = None) -> None:
    from .data.corpus import EmptyCorpusError, expand_paths

    corpus = cfg.corpus
    if corpus.source not in ("files", "jsonl", "parquet"):
        return
    found = expand_paths(corpus.paths, storage_options)
    if not found:
        raise EmptyCorpusError(f"corpus.paths {corpus.paths} matched no files; fix the paths or globs")
    fs, _ = fsspec.core.url_to_fs(found[0], **(storage_options or {}))
    for path in found:
        if not fs.isfile(path):
            kind = "a directory" if fs.isdir(path) else "missing"
            raise EmptyCorpusError(f"corpus.paths: {path} is {kind}; list files, or a glob such as "
                                   f"{path.rstrip('/')}/**/*.txt")


def api_key(llm: LLMConfig) -> str | None:
    """The key from the environment variable the config names; UserError when it is unset."""
    if llm.backend != "openai" or not llm.api_key_env:
        return None
    key = os.environ.get(llm.api_key_env, "")
    if not key.strip():
        raise UserError(f"llm.api_key_env is {llm.api_key_env}, but ${llm.api_key_env} is not set in this "
                        f"environment; export {llm.api_key_env}=<your key> first (or remove llm.api_key_env for a "
                        "local server without auth)")
    return key


def check_endpoint(llm: LLMConfig) -> None:
    """The API key is set and the endpoint answers (the local backend needs neither)."""
    if llm.backend != "openai" or not llm.base_url:
        return
    from .llm.client import OpenAICompatibleLLM

    OpenAICompatibleLLM(llm.base_url, llm.model, api_key(llm), timeout_s=llm.timeout_s).check_reachable()


def check_at_load(cfg: ProjectConfig) -> None:
    """What is local and cheap: no network, no corpus listing, only file headers."""
    from .data.model_files import check_model_source
    from .data.subject import check_device

    if "://" not in cfg.storage_root:
        check_storage_writable(cfg.storage_root)
    check_device(cfg.subject_model.device)
    check_model_source(cfg.subject_model.id)
    for layer, coder in cfg.hookpoints.items():
        if "://" not in getattr(coder, "path", "://"):
            check_coder_files(coder, hookpoint=layer)


def check_project(cfg: ProjectConfig, layers: Iterable[str], *, with_llm: bool,
                  storage_options: dict | None = None) -> None:
    """Everything a run of `layers` needs that can be checked without loading a model."""
    from .data.model_files import check_model_source
    from .data.subject import check_device

    check_storage_writable(cfg.storage_root, storage_options)
    check_device(cfg.subject_model.device)
    check_model_source(cfg.subject_model.id)
    for layer in layers:
        check_coder_files(cfg.hookpoints[layer], storage_options, hookpoint=layer)
    check_corpus_paths(cfg, storage_options)
    if with_llm:
        check_endpoint(cfg.llm)
