"""The subject model: loading, hookpoint resolution and a forward pass that stops early.

Accepted hookpoints (names relative to the decoder stack; a leading `model.` is ignored):

| hookpoint           | the module                          | output read by an SAE          |
|---------------------|-------------------------------------|--------------------------------|
| `layers.N`          | decoder layer N                     | the residual stream after it   |
| `layers.N.mlp`      | layer N's MLP                       | the MLP's output               |
| `layers.N.self_attn`| layer N's attention                 | the attention's output         |
| `embed_tokens`      | the token embedding                 | the embeddings (residual at 0) |

Which tensor of the module a coder reads (`Where`) follows from the coder, not the name:
- `output`: the module's output (SAEs, the default);
- `input`: the module's input; a transcoder reads the MLP's input (the post-attention
  normed residual) and writes its output, so a transcoder at `layers.N.mlp` reads here;
- `neurons`: the MLP's hidden units, i.e. the input of its down projection.
Models that name the parts differently (GPT-NeoX `attention`, `embed_in`,
`dense_4h_to_h`) are reached through the same four forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ModelLoadError, UserError
from . import model_files
from .revisions import revision_of

Where = Literal["output", "input", "neurons"]
HOOKPOINT_FORMS = ("layers.N", "layers.N.mlp", "layers.N.self_attn", "embed_tokens")
_HOOKPOINT = re.compile(r"^(?:model\.)?(?:layers\.(?P<layer>\d+)(?:\.(?P<part>mlp|self_attn))?|(?P<embed>embed_tokens))$")
# What each accepted part is called in the model families transformers ships.
_ALIASES = {
    "self_attn": ("self_attn", "attention", "attn"),
    "mlp": ("mlp",),
    "embed_tokens": ("embed_tokens", "embed_in", "wte"),
    "down_proj": ("down_proj", "dense_4h_to_h", "c_proj", "fc2"),
}


class UnknownHookpointError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Capture:
    hookpoint: str  # as configured, e.g. "layers.6"
    module: nn.Module  # the module whose output or input (or down projection's input) is read
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

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def decoder(self) -> nn.Module:
        return self.model.get_decoder()

    def module_names(self) -> list[str]:
        return [n for n, _ in self.decoder().named_modules() if n]

    def _unknown(self, hookpoint: str, why: str) -> UnknownHookpointError:
        return UnknownHookpointError(
            f"unknown hookpoint '{hookpoint}' for {self.model_id}: {why}. Accepted forms: residual "
            f"'layers.N' (after decoder layer N), 'layers.N.mlp' (MLP output; a transcoder there reads the MLP "
            f"input), 'layers.N.self_attn' (attention output) and 'embed_tokens', with N in 0 … "
            f"{self.n_layers - 1}, e.g. layers.{self.n_layers // 2}, layers.{self.n_layers // 2}.mlp; "
            "fix the hookpoints in the project config"
        )

    def hookpoint_module(self, hookpoint: str) -> nn.Module:
        """The module an accepted hookpoint name refers to (see the module docstring)."""
        match = _HOOKPOINT.match(hookpoint)
        if match is None:
            raise self._unknown(hookpoint, "not one of the accepted forms")
        decoder = self.decoder()
        if match["embed"]:
            module, missing = _child(decoder, "embed_tokens"), "the model has no token embedding"
        else:
            index, layers = int(match["layer"]), getattr(decoder, "layers", None)
            if layers is None or index >= len(layers):
                raise self._unknown(hookpoint, f"layer {index} does not exist")
            part = match["part"]
            module, missing = (layers[index] if part is None else _child(layers[index], part)), f"layer {index} has no {part}"
        if module is None:
            raise self._unknown(hookpoint, missing)
        return module

    def resolve(self, hookpoint: str, where: Where = "output") -> Capture:
        module = self.hookpoint_module(hookpoint)
        if where == "neurons":
            down = _child(module, "down_proj")
            if down is None:
                raise UnknownHookpointError(
                    f"neurons need an MLP hookpoint with a down projection (e.g. 'layers.6.mlp'), got '{hookpoint}'"
                )
            module = down
        elif where == "input" and isinstance(module, nn.Embedding):
            raise UnknownHookpointError(
                f"'{hookpoint}' reads token ids, so a transcoder cannot read its input; use an SAE there, or put "
                "the transcoder at 'layers.N.mlp'"
            )
        order = {id(m): i for i, m in enumerate(self.decoder().modules())}
        return Capture(hookpoint, module, where, order[id(module)])

    def width(self, capture: Capture) -> int:
        if capture.where == "neurons":
            return int(capture.module.in_features)
        return self.d_model


def _child(module: nn.Module, part: str) -> nn.Module | None:
    return next((getattr(module, name) for name in _ALIASES[part] if isinstance(getattr(module, name, None), nn.Module)),
                None)


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden-state input of a module: first positional argument, or `hidden_states=`."""
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    return next(v for v in kwargs.values() if isinstance(v, torch.Tensor))


def _read(capture: Capture, args: tuple, kwargs: dict, output: object) -> torch.Tensor:
    tensor = output if capture.where == "output" else _first_tensor(args, kwargs)
    return tensor[0] if isinstance(tensor, tuple) else tensor


class _StopForward(Exception):
    pass


@torch.inference_mode()
def forward_captures(subject: Subject, input_ids: torch.Tensor, captures: list[Capture]) -> dict[str, torch.Tensor]:
    """Run the model on input_ids [B, T] up to the deepest capture; return hookpoint -> [B, T, d]."""
    out: dict[str, torch.Tensor] = {}
    deepest = max(captures, key=lambda c: c.depth)
    handles = []

    def hook(capture: Capture):
        def fn(module, args, kwargs, output):
            out[capture.hookpoint] = _read(capture, args, kwargs, output)
            if capture is deepest and len(out) == len(captures):
                raise _StopForward

        return fn

    for capture in captures:
        handles.append(capture.module.register_forward_hook(hook(capture), with_kwargs=True))
    try:
        subject.decoder()(input_ids=input_ids.to(subject.device), use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return out


@contextmanager
def steer(capture: Capture, delta: torch.Tensor) -> Iterator[None]:
    """Within the block, add `delta` [d] (or [B, 1, d]) to what `capture` reads, at every position.

    `output`: the module's output is replaced by output + delta (the residual stream after a
    layer, or an MLP's output). `neurons`: delta is added to the down projection's input, i.e. to
    the MLP's hidden units. Steering the input of a module is not offered: a coder's decoder
    writes into the module's output (a transcoder's too).
    """
    if capture.where == "input":
        raise ValueError("steer the module's output (a transcoder's decoder writes there), not its input")

    def add(tensor: torch.Tensor) -> torch.Tensor:
        return tensor + delta.to(tensor.device, tensor.dtype)

    if capture.where == "neurons":
        handle = capture.module.register_forward_pre_hook(lambda module, args: (add(args[0]), *args[1:]))
    else:
        def on_output(module, args, output):
            if isinstance(output, tuple):
                return (add(output[0]), *output[1:])
            return add(output)

        handle = capture.module.register_forward_hook(on_output)
    try:
        yield
    finally:
        handle.remove()


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
