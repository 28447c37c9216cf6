"""The subject model: loading, hookpoint resolution and a forward pass that stops early.

Hookpoints are module names relative to the decoder stack (`layers.6`,
`layers.6.mlp`, `layers.6.self_attn`); a full name (`model.layers.6`) works too.
A capture reads a module's output, or for MLP neurons the input of its
`down_proj` (the post-activation hidden units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ModelLoadError, UserError
from . import model_files
from .revisions import revision_of

Where = Literal["output", "neurons"]


class UnknownHookpointError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Capture:
    hookpoint: str  # as configured, e.g. "layers.6"
    module: nn.Module  # the module whose output (or down_proj input) is read
    where: Where
    depth: int  # order of execution, to stop after the deepest


@dataclass
class Subject:
    model: nn.Module
    tokenizer: object
    model_id: str
    revision: str  # hub sha, or a content hash of local files
    device: torch.device
    dtype: torch.dtype

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    def decoder(self) -> nn.Module:
        return self.model.get_decoder()

    def module_names(self) -> list[str]:
        return [n for n, _ in self.decoder().named_modules() if n]

    def resolve(self, hookpoint: str, where: Where = "output") -> Capture:
        modules = dict(self.decoder().named_modules())
        name = hookpoint.removeprefix("model.")
        if name not in modules:
            layer_level = [n for n in modules if n.count(".") <= 2 and n.startswith("layers.")]
            sample = ", ".join(layer_level[:12])
            raise UnknownHookpointError(
                f"unknown hookpoint '{hookpoint}' for {self.model_id}; valid names are decoder module names "
                f"such as {sample}, … (layers.0 … layers.{self.model.config.num_hidden_layers - 1}); "
                "fix the hookpoints in the project config"
            )
        module = modules[name]
        if where == "neurons":
            if not hasattr(module, "down_proj"):
                raise UnknownHookpointError(
                    f"neurons need an MLP hookpoint with a down_proj (e.g. 'layers.6.mlp'), got '{hookpoint}'"
                )
            module = module.down_proj
        order = {id(m): i for i, m in enumerate(self.decoder().modules())}
        return Capture(hookpoint, module, where, order[id(module)])

    def width(self, capture: Capture) -> int:
        if capture.where == "neurons":
            return int(capture.module.in_features)
        return self.d_model


class _StopForward(Exception):
    pass


@torch.inference_mode()
def forward_captures(subject: Subject, input_ids: torch.Tensor, captures: list[Capture]) -> dict[str, torch.Tensor]:
    """Run the model on input_ids [B, T] up to the deepest capture; return hookpoint -> [B, T, d]."""
    out: dict[str, torch.Tensor] = {}
    deepest = max(captures, key=lambda c: c.depth)
    handles = []

    def hook(capture: Capture):
        def fn(module, args, output):
            tensor = args[0] if capture.where == "neurons" else output
            out[capture.hookpoint] = tensor[0] if isinstance(tensor, tuple) else tensor
            if capture is deepest and len(out) == len(captures):
                raise _StopForward

        return fn

    for capture in captures:
        handles.append(capture.module.register_forward_hook(hook(capture)))
    try:
        subject.decoder()(input_ids=input_ids.to(subject.device), use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def check_device(device: str) -> None:
    """Fail before loading a model onto a device this machine does not have."""
    try:
        torch.device(device)
    except RuntimeError:
        raise ModelLoadError(f"subject_model.device '{device}' is not a torch device; use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"subject_model.device is '{device}' but this torch ({torch.__version__}) sees no CUDA "
                             "device; set subject_model.device: cpu, or install torch's CUDA build on a GPU host")
    if device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ModelLoadError(f"subject_model.device is '{device}' but only {torch.cuda.device_count()} CUDA "
                             "device(s) exist; pick one of them")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("subject_model.device is 'mps' but MPS is not available here; set subject_model.device: cpu")
def load_tokenizer(model_id: str, revision: str | None = None):
    """The subject model's tokenizer alone: no weights are read and no device is touched."""
    from transformers import AutoTokenizer

    model_files.check_model_source(model_id)  # before transformers guesses (e.g. "install sentencepiece")
    source, gguf_file = model_files.tokenizer_source(model_id)
    try:
        return AutoTokenizer.from_pretrained(source, revision=revision, gguf_file=gguf_file)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"cannot load the tokenizer of subject model '{model_id}': {' '.join(str(e).split())[:400]}. Fix "
            "subject_model.id: a model directory, a .gguf path, a hub id (online), or the offline default "
            "'smollm2-135m-instruct'") from None


def load_subject(model_id: str, revision: str | None, dtype: str, device: str) -> Subject:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_device(device)
    model_files.check_model_source(model_id)  # before transformers guesses (e.g. "install sentencepiece")
    source = model_files.loadable(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=_DTYPES[dtype])
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"cannot load subject model '{model_id}': {' '.join(str(e).split())[:400]}. Fix subject_model.id: a "
            "model directory, a .gguf path, a hub id (online), or the offline default 'smollm2-135m-instruct'"
        ) from None
    model.to(device).eval()
    return Subject(model, tokenizer, model_id, revision_of(model_files.revision_source(model_id), hub_revision_hint=revision),
                   torch.device(device), _DTYPES[dtype])
