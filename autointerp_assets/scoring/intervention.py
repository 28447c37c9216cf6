"""Intervention scorer (Paulo et al. 2024 §3.3.5): does the explanation predict what the latent
*does* to the model's output?

Steering (on the subject model's device; the `gpu` pool):
1. A latent's direction is its decoder row where its coder writes (`SparseCoder.writes`): the
   hooked module's output for SAEs and transcoders, the MLP's hidden units for neurons. It is
   added, scaled, at every position of the prompt and of the continuation.
2. Strength follows the paper: it is calibrated per latent so that the mean KL divergence of
   the next-token distribution at the prompts' last position (clean -> steered) reaches
   `target_kl` (log-bisection over the scale). Latents with a large and a small decoder norm
   then move the output by the same amount, so a continuation is not recognisable by the mere
   size of the push. "Several strengths" are `multipliers` of that calibrated scale.
3. Greedy continuations of `max_new_tokens` from the same short prompts for every latent, plus
   one clean continuation per prompt (no steering), shared by all latents.

Scoring (any LLM with prompt logprobs): for a continuation c of prompt p, the score is
    delta(c) = log P(explanation | p + c) - log P(explanation | p + clean continuation of p)
read as the log-probability of the explanation after a short template. The paper's intervention
score is the mean delta over the latent's own continuations (`score`). The issue's contrast, and
the metric the chance baseline is set against, is the AUROC of delta for this latent's
continuations (positives) against continuations steered by other latents of the partition
(negatives, same prompts and strengths): does the explanation pick out what *this* latent did?
Every latent of a partition is steered anyway, so negatives cost no extra generation.

Choices and why:
- same prompts for every latent: the only difference between positives and negatives is the steering;
- delta against the clean continuation: removes how likely the explanation is after that prompt anyway;
- greedy decoding: reproducible, and the cache of LLM answers then makes reruns free;
- steering at every position rather than the last only: the continuation keeps being steered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..coders.base import SparseCoder
from ..data.subject import Capture, Subject, forward_captures, steer
from ..llm.api import PromptScore, ScoreRequest
from ..llm.prompts import version

# Ends without a space: the explanation's first word then starts its own token (" music"), which a
# trailing space in the template would merge into a token that starts before the scored part.
_TEMPLATE = "{text}\n\nThe text above was written by a model that was nudged toward:"
PROMPT_VERSION = version(_TEMPLATE)


@dataclass(frozen=True)
class SteeringConfig:
    target_kl: float = 1.0  # nats, mean over prompts, at the calibrated scale
    multipliers: tuple[float, ...] = (0.5, 1.0, 2.0)  # strengths, as multiples of the calibrated scale
    max_new_tokens: int = 16
    bisection_steps: int = 8
    max_scale: float = 64.0  # in units of the mean hidden-state norm at the hookpoint


@dataclass(frozen=True)
class Continuation:
    latent: int | None  # None: the clean (unsteered) continuation
    multiplier: float  # 0 for the clean one
    prompt: int  # index into the prompts
    text: str  # the prompt's text followed by the generated tokens
    kl: float = 0.0  # mean next-token KL of the calibrated scale (the same for every multiplier of a latent)


def _prompt_batch(subject: Subject, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask [P, T]: generation appends on the right."""
    width = max(len(p) for p in prompts)
    pad = int(getattr(subject.tokenizer, "pad_token_id", None) or 0)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.to(subject.device), mask.to(subject.device)


@torch.inference_mode()
def _last_logprobs(subject: Subject, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = subject.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]  # [P, vocab]
    return logits.float().log_softmax(-1)


def _mean_kl(clean: torch.Tensor, steered: torch.Tensor) -> float:
    return float((clean.exp() * (clean - steered)).sum(-1).mean())


@torch.inference_mode()
def hidden_norm(subject: Subject, capture: Capture, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean norm of the hidden state where the directions are added, over the prompts' real tokens
    (the first token excluded: an attention sink's norm is an outlier)."""
    hidden = forward_captures(subject, ids, [capture])[capture.hookpoint].float()  # [P, T, d]
    norms = hidden.norm(dim=-1)[:, 1:][mask[:, 1:].bool()]
    return float(norms.mean())


def calibrate(subject: Subject, capture: Capture, direction: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
              unit: float, cfg: SteeringConfig) -> tuple[float, float]:
    """(scale, kl): the scale of the unit `direction` [d] whose mean next-token KL is nearest
    `target_kl`, found by bisection on log(scale / unit) in [1/max_scale, max_scale]."""
    clean = _last_logprobs(subject, ids, mask)
    lo, hi = -math.log(cfg.max_scale), math.log(cfg.max_scale)
    best = (unit * cfg.max_scale, math.inf)
    for _ in range(cfg.bisection_steps):
        mid = (lo + hi) / 2
        scale = unit * math.exp(mid)
        with steer(capture, direction * scale):
            kl = _mean_kl(clean, _last_logprobs(subject, ids, mask))
        if abs(math.log(max(kl, 1e-9) / cfg.target_kl)) < abs(math.log(max(best[1], 1e-9) / cfg.target_kl)):
            best = (scale, kl)
        lo, hi = (mid, hi) if kl < cfg.target_kl else (lo, mid)
    return best


@torch.inference_mode()
def _generate(subject: Subject, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> list[str]:
    tokenizer = subject.tokenizer
    out = subject.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=int(getattr(tokenizer, "pad_token_id", None) or 0))
    return [tokenizer.decode(row[mask.shape[1] :], skip_special_tokens=True) for row in out]


def steer_latents(subject: Subject, coder: SparseCoder, hookpoint: str, latents: Sequence[int],
                  prompts: Sequence[Sequence[int]], cfg: SteeringConfig = SteeringConfig()) -> list[Continuation]:
    """Clean continuations of every prompt, then each latent's at every multiplier."""
    capture = subject.resolve(hookpoint, coder.writes)
    ids, mask = _prompt_batch(subject, prompts)
    texts = [subject.tokenizer.decode(list(p), skip_special_tokens=True) for p in prompts]
    unit = hidden_norm(subject, capture, ids, mask)
    out = [Continuation(None, 0.0, i, texts[i] + c) for i, c in enumerate(_generate(subject, ids, mask, cfg.max_new_tokens))]
    directions = coder.directions(torch.tensor(list(latents), dtype=torch.long)).float()  # [n, d]
    for latent, direction in zip(latents, directions, strict=True):
        norm = float(direction.norm())
        if norm == 0:
            continue  # a dead decoder row steers nothing; the scorer reports it
        unit_direction = (direction / norm).to(subject.device)
        scale, kl = calibrate(subject, capture, unit_direction, ids, mask, unit, cfg)
        for multiplier in cfg.multipliers:
            with steer(capture, unit_direction * scale * multiplier):
                generated = _generate(subject, ids, mask, cfg.max_new_tokens)
            out += [Continuation(latent, multiplier, i, texts[i] + c, kl) for i, c in enumerate(generated)]
    return out


# -- scoring ---------------------------------------------------------------------------------------


def explanation_request(explanation: str, text: str) -> ScoreRequest:
    head = _TEMPLATE.format(text=text)
    return ScoreRequest(f"{head} {explanation.strip()}", score_from=len(head))


@dataclass(frozen=True)
class LatentDeltas:
    own: list[float]  # delta of each of this latent's continuations
    others: list[float]  # delta of each continuation steered by another latent
    failed: int  # continuations whose request failed (own and others)
    error: str | None = None  # one of the failures, for the reason


def requests_for(explanation: str, continuations: Sequence[Continuation]) -> list[ScoreRequest]:
    """One request per continuation (clean ones included), in order."""
    return [explanation_request(explanation, c.text) for c in continuations]


def deltas(latent: int, continuations: Sequence[Continuation], answers: Sequence[PromptScore],
           negatives: set[int]) -> LatentDeltas:
    """Deltas of this latent's continuations and of those of the `negatives` latents."""
    clean = {c.prompt: a for c, a in zip(continuations, answers, strict=True) if c.latent is None}
    own, others, failed, error = [], [], 0, None
    for c, a in zip(continuations, answers, strict=True):
        if c.latent is None or (c.latent != latent and c.latent not in negatives):
            continue
        base = clean.get(c.prompt)
        if not a.ok or base is None or not base.ok:
            failed += 1
            error = error or (a.error if not a.ok else (base.error if base is not None else "no clean continuation"))
            continue
        (own if c.latent == latent else others).append(a.logprob_sum - base.logprob_sum)
    return LatentDeltas(own, others, failed, error)
