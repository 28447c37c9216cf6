"""Output-side explainer: besides where a latent fires, show the explainer what it makes the model
say: the tokens its decoder direction promotes, read through the subject's unembedding.

The direction is the latent's decoder row in the residual stream: an SAE's or transcoder's
`W_dec` row (an MLP's or attention's output is added to the residual stream as is), or for a
raw neuron the column of the MLP's down projection. It is scaled by the final norm's weight
(the logit lens, without the normalisation, which only rescales) and multiplied by the
unembedding: `logits = W_U (g * d)`; the top tokens are those the latent pushes up most.
For latents in early layers this is a weak signal (later layers transform the residual
stream); it is shown next to the activating examples, not instead of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from ..coders.base import SparseCoder
from ..data.subject import Subject
from ..llm.api import Message
from ..llm.prompts import CLOSE, OPEN, Example, escape, render_highlighted, tok, version

N_PROMOTED = 10


def residual_directions(subject: Subject, coder: SparseCoder, hookpoint: str, latents: Sequence[int]) -> torch.Tensor:
    """Decoder directions [n, d_model] in the residual stream."""
    index = torch.tensor(list(latents), dtype=torch.long)
    if coder.writes == "neurons":
        down = subject.resolve(hookpoint, "neurons").module  # Linear: weight [d_model, d_mlp]
        return down.weight.detach()[:, index].T.float().cpu()
    return coder.directions(index).detach().float().cpu()


@torch.inference_mode()
def promoted_tokens(subject: Subject, coder: SparseCoder, hookpoint: str, latents: Sequence[int],
                    k: int = N_PROMOTED) -> dict[int, list[str]]:
    """latent -> the `k` token strings its direction promotes most, strongest first."""
    directions = residual_directions(subject, coder, hookpoint, latents)  # [n, d]
    norm = getattr(subject.decoder(), "norm", None)
    if norm is not None and getattr(norm, "weight", None) is not None:
        directions = directions * norm.weight.detach().float().cpu()
    unembedding = subject.model.get_output_embeddings().weight.detach().float().cpu()  # [vocab, d]
    top = (directions @ unembedding.T).topk(k, dim=-1).indices  # [n, k]
    return {latent: [subject.tokenizer.decode([t]) for t in row] for latent, row in zip(latents, top.tolist(), strict=True)}


_INTRO = (
    "You are helping to interpret a neural network. A language model has an internal latent (a learned "
    "feature). You will see short text excerpts in which it is active, with the tokens where it fires marked "
    "like {open}this{close}, and the tokens it makes the model more likely to write next when it fires."
)
_TASK = (
    "\n\nDescribe in one short phrase what the latent responds to, using the promoted tokens where they agree "
    "with the excerpts (a latent often fires on a topic and promotes words of the same topic). Be concrete and "
    "write at most one sentence.\n\nAnswer with one line:\nExplanation: <your description>"
)
_SHOT = (
    (tok(" She", " played", " the", (" violin", 8.0), " in", " the", " orchestra"),
     tok(" a", " new", (" piano", 9.0), " concerto"), tok(" tuning", " the", (" guitar", 7.0), " strings")),
    (" music", " cello", " melody", " instrument", " sonata"),
    "musical instruments, in text about music",
)


def _user(activating: Sequence[Example], promoted: Sequence[str]) -> str:
    lines = ["Excerpts where the latent fires:"]
    lines += [f"Example {i}: {render_highlighted(ex.token_strs, ex.active)}" for i, ex in enumerate(activating, 1)]
    lines += ["", "Tokens the latent promotes: " + ", ".join(json.dumps(escape(t)) for t in promoted)]
    return "\n".join(lines)


def build_messages(activating: Sequence[Example], promoted: Sequence[str]) -> tuple[Message, ...]:
    if not activating:
        raise ValueError("an explainer prompt needs at least one activating example")
    examples, shot_promoted, answer = _SHOT
    return (
        {"role": "system", "content": _INTRO.format(open=OPEN, close=CLOSE) + _TASK},
        {"role": "user", "content": _user(examples, shot_promoted)},
        {"role": "assistant", "content": f"Explanation: {answer}"},
        {"role": "user", "content": _user(activating, promoted)},
    )


PROMPT_VERSION = version(build_messages((tok("x", ("y", 1.0)),), ("z",)))
