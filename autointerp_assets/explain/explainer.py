"""Explain each latent from its explain-split examples: with an LLM, or the no-LLM baseline.

Input: the `contexts` and `skipped` tables of the sampling stage (see scoring.py for the
contexts columns). Output: one row per latent, see `EXPLANATION_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from ..config import ExplainerConfig, SamplingConfig
from ..llm.api import ChatLLM, ChatRequest
from ..llm.prompts import DEFAULT_HIGHLIGHT_FRACTION
from . import output_side, single_token
from .prompts import (
    PROMPT_VERSIONS,
    Example,
    build_explainer_messages,
    explainer_prompt_key,
    parse_explanation,
    top_tokens_explanation,
)

CODE_VERSION = "2"  # bump when a change here changes what the stage writes: its asset and all below go stale
EXPLANATION_SCHEMA: dict[str, pl.DataType] = {
    "latent": pl.Int64(),
    "status": pl.Utf8(),  # "ok" | "failed" | "skipped"
    "explanation": pl.Utf8(),  # null unless ok
    "reason": pl.Utf8(),  # why failed/skipped; null when ok
    "explainer": pl.Utf8(),  # ExplainerConfig.kind
    "explainer_model": pl.Utf8(),  # the LLM's model name; null for top_tokens
    "prompt_version": pl.Utf8(),  # PROMPT_VERSIONS entry of the template used
    "n_examples": pl.Int64(),  # windows shown to the explainer (activating + negatives)
}
_REASON_ANSWER_CHARS = 160  # how much of a rejected answer to keep in `reason`


def _examples(rows: pl.DataFrame, sampling: SamplingConfig | None) -> list[Example]:
    """Windows as Examples; highlights follow sampling.highlight_fraction (the fuzzing scorer's rule)."""
    fraction = sampling.highlight_fraction if sampling else DEFAULT_HIGHLIGHT_FRACTION
    return [Example(tuple(t), tuple(a), fraction) for t, a in zip(rows["token_strs"], rows["acts"], strict=True)]


def _ordered(rows: pl.DataFrame, sampling: SamplingConfig | None, latent: int) -> pl.DataFrame:
    """Strongest first; with a sampling config, a seeded shuffle instead, so that the explainer
    does not anchor on the order (the quantile examples otherwise always come last)."""
    rows = rows.sort(["max_act", "seq", "start"], descending=[True, False, False])
    if sampling is None:
        return rows
    perm = np.random.default_rng([sampling.seed, latent]).permutation(rows.height)
    return rows[perm]


def top_tokens_explanations(contexts: pl.DataFrame, sampling: SamplingConfig) -> dict[int, str]:
    """Per latent: what the `top_tokens` explainer writes from its explain split (no LLM); latents
    whose activating examples have no active token are left out."""
    activating = contexts.filter((pl.col("split") == "explain") & pl.col("activating"))
    out = {}
    for (latent,), df in activating.partition_by("latent", as_dict=True).items():
        text = top_tokens_explanation(_examples(_ordered(df, sampling, latent), sampling))
        if text is not None:
            out[latent] = text
    return out


def explain_latents(
    contexts: pl.DataFrame,
    skipped: pl.DataFrame,
    llm: ChatLLM | None,
    cfg: ExplainerConfig,
    sampling: SamplingConfig | None = None,
    promoted: Mapping[int, Sequence[str]] | None = None,  # output_side: latent -> the tokens it promotes
) -> pl.DataFrame:
    """One row per latent of `contexts` and of `skipped` (skipped wins), sorted by latent.

    Uses the explain split only. `default` shows activating windows with highlights; `single_token`
    marks only each window's peak; `output_side` adds `promoted`; `contrastive`
    also shows the explain split's non-activating windows; `top_tokens` needs no LLM (`llm` may be
    None). All LLM requests go through one `complete_many` call, so the backend's concurrency
    applies; a failed request or an unparseable answer is a "failed" row with the reason.
    """
    uses_llm = cfg.kind != "top_tokens"
    if uses_llm and llm is None:
        raise ValueError(f"explainer kind {cfg.kind!r} needs an LLM; use kind 'top_tokens' to run without one")
    version = PROMPT_VERSIONS[explainer_prompt_key(cfg.kind, cfg.show_activations, cfg.chain_of_thought)]
    model = llm.model_name if uses_llm and llm is not None else None

    skipped_reason = dict(zip(skipped["latent"].to_list(), skipped["reason"].to_list(), strict=True))
    explain = contexts.filter(pl.col("split") == "explain")
    by_latent = {key[0]: df for key, df in explain.partition_by("latent", as_dict=True).items()}
    latents = sorted(set(contexts["latent"].to_list()) | set(skipped_reason))

    rows: dict[int, dict] = {}
    pending: list[tuple[int, ChatRequest, int]] = []  # (latent, request, n_examples)
    for latent in latents:
        row = {"latent": latent, "explanation": None, "reason": None, "n_examples": 0}
        rows[latent] = row
        if latent in skipped_reason:
            row.update(status="skipped", reason=skipped_reason[latent])
            continue
        df = by_latent.get(latent, explain.clear())
        activating = _examples(_ordered(df.filter(pl.col("activating")), sampling, latent), sampling)
        if not activating:
            row.update(status="failed", reason="no activating examples in the explain split")
            continue
        if not uses_llm:
            text = top_tokens_explanation(activating)
            row.update(status="ok" if text else "failed", explanation=text, n_examples=len(activating))
            if text is None:
                row["reason"] = "activating examples have no active token"
            continue
        negatives = (
            _examples(_ordered(df.filter(~pl.col("activating")), sampling, latent), sampling)
            if cfg.kind == "contrastive"
            else []
        )
        if cfg.kind == "single_token":
            messages = single_token.build_messages(activating)
        elif cfg.kind == "output_side":
            if promoted is None:
                raise ValueError("the output_side explainer needs each latent's promoted tokens")
            messages = output_side.build_messages(activating, promoted[latent])
        else:
            messages = build_explainer_messages(
                activating,
                negatives,
                kind=cfg.kind,  # type: ignore[arg-type]
                show_activations=cfg.show_activations,
                chain_of_thought=cfg.chain_of_thought,
            )
        pending.append(
            (latent, ChatRequest(messages=messages, max_tokens=cfg.max_tokens), len(activating) + len(negatives))
        )

    if pending:
        assert llm is not None
        completions = llm.complete_many([req for _, req, _ in pending])
        for (latent, _, n_examples), completion in zip(pending, completions, strict=True):
            row = rows[latent]
            row["n_examples"] = n_examples
            if not completion.ok:
                row.update(status="failed", reason=f"llm error: {completion.error}")
                continue
            parsed = parse_explanation(completion.text)
            if parsed.ok:
                row.update(status="ok", explanation=parsed.value)
            else:
                answer = (completion.text or "")[:_REASON_ANSWER_CHARS]
                row.update(status="failed", reason=f"{parsed.failure}; answer: {answer!r}")

    records = [
        {**rows[latent], "explainer": cfg.kind, "explainer_model": model, "prompt_version": version}
        for latent in latents
    ]
    return pl.DataFrame(records, schema=EXPLANATION_SCHEMA).select(list(EXPLANATION_SCHEMA))
