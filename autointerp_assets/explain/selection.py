"""An operator's latent selection, kept per partition, and explanations already paid for kept too.

    selections/<layer>/<range>.json   {"latents": [3, 17] | null (all), "chosen_by": run id}

- A run with an explicit selection (latents, max_latents, or all) stores it, resolved to
  latent ids; a run without one (automation, a plain materialisation) uses the stored one,
  or every latent when nobody chose.
- Latents left out of a run keep an explanation whose answer is already in the LLM response
  cache for today's prompt: a narrower run never throws away what was paid for, and never
  pays for what was left out. (A changed prompt or new examples make a new request: that
  explanation was of other evidence.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ..config import ExplainerConfig, SamplingConfig
from ..llm.api import ChatLLM, ChatRequest, Completion, Usage, failed
from ..store.store import ArtifactStore
from .explainer import explain_latents

NOT_SELECTED = "not selected (latent selection)"


@dataclass(frozen=True)
class Selection:
    latents: tuple[int, ...] | None  # None: every latent
    source: str  # "run config" | "stored" | "default"

    def as_metadata(self) -> dict:
        return {"source": self.source, "latents": list(self.latents) if self.latents is not None else "all"}


def selection_path(layer: str, latent_range: str) -> str:
    return f"selections/{layer}/{latent_range}.json"


def choose(stats: pl.DataFrame, candidates: set[int], latents: Sequence[int], max_latents: int | None) -> tuple[int, ...]:
    """`latents` (empty: all candidates), then at most `max_latents`, most frequently firing first."""
    chosen = candidates & set(latents) if latents else set(candidates)
    if max_latents is not None:
        ranked = stats.filter(pl.col("latent").is_in(list(chosen))).sort(["n_firing", "latent"], descending=[True, False])
        chosen = set(ranked["latent"].head(max_latents).to_list())
    return tuple(sorted(chosen))


def resolve(store: ArtifactStore, layer: str, latent_range: str, contexts: pl.DataFrame, stats: pl.DataFrame,
            latents: Sequence[int], max_latents: int | None, all_latents: bool) -> Selection:
    """The run config's selection when it has one, else the stored one, else every latent."""
    if all_latents:
        return Selection(None, "run config")
    if latents or max_latents is not None:
        return Selection(choose(stats, set(contexts["latent"].unique().to_list()), latents, max_latents), "run config")
    path = selection_path(layer, latent_range)
    if store.exists(path):
        stored = store.read_json(path)["latents"]
        return Selection(tuple(stored) if stored is not None else None, "stored")
    return Selection(None, "default")


def remember(store: ArtifactStore, layer: str, latent_range: str, selection: Selection, run_id: str) -> None:
    """Store an operator's selection for later runs (a stored or default one is left as it is)."""
    if selection.source == "run config":
        latents = list(selection.latents) if selection.latents is not None else None
        store.write_json(selection_path(layer, latent_range), {"latents": latents, "chosen_by": run_id})


def split(contexts: pl.DataFrame, skipped: pl.DataFrame, selection: Selection) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(contexts of the selected latents, skipped + the others with the reason): nothing vanishes."""
    if selection.latents is None:
        return contexts, skipped
    chosen = list(selection.latents)
    left_out = sorted(set(contexts["latent"].unique().to_list()) - set(chosen))
    reasons = pl.DataFrame({"latent": left_out, "reason": [NOT_SELECTED] * len(left_out)}, schema=skipped.schema)
    return contexts.filter(pl.col("latent").is_in(chosen)), pl.concat([skipped, reasons])


class CacheOnlyLLM:
    """Answers from the response cache only; anything else fails without being sent."""

    supports_logprobs = True

    def __init__(self, llm: ChatLLM):
        self.model_name = llm.model_name
        self.usage = Usage()
        self._cache = getattr(llm, "cache", None)

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            hit = self._cache.get(self.model_name, request) if self._cache is not None else None
            out.append(hit or failed("not_paid_for", NOT_SELECTED))
        self.usage.cache_hits += sum(c.ok for c in out)
        return out


def keep_paid_for(table: pl.DataFrame, contexts: pl.DataFrame, llm: ChatLLM | None, explainer: ExplainerConfig,
                  sampling: SamplingConfig, promoted: Mapping[int, Sequence[str]] | None = None) -> tuple[pl.DataFrame, int]:
    """`table` with each latent left out of the selection explained from the cache where its
    answer is there; returns the table and how many were kept that way."""
    left_out = table.filter((pl.col("status") == "skipped") & (pl.col("reason") == NOT_SELECTED))["latent"].to_list()
    if not left_out or llm is None:
        return table, 0
    mine = contexts.filter(pl.col("latent").is_in(left_out))
    none_skipped = pl.DataFrame(schema={"latent": pl.Int64, "reason": pl.Utf8})
    paid = explain_latents(mine, none_skipped, CacheOnlyLLM(llm), explainer, sampling, promoted).filter(
        pl.col("status") == "ok")
    if paid.is_empty():
        return table, 0
    kept = table.filter(~pl.col("latent").is_in(paid["latent"].to_list()))
    return pl.concat([kept, paid.select(table.columns)]).sort("latent"), paid.height
