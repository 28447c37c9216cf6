"""Latents per minute through the LLM stages (explain + score) against a real local
OpenAI-compatible server, at concurrency 1 and 8, side by side in one run.

    python bench/bench_llm.py [--root data] [--layer layers.6] [--range 00000-00031] [--latents 8]

Needs a materialised `contexts` partition (`python -m autointerp_assets demo --through
contexts`). Starts `transformers serve` on the local SmolLM2; each concurrency level
gets a fresh response cache so nothing is answered from a previous level.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.transformers_server import transformers_serve  # noqa: E402

from autointerp_assets.config import load_config  # noqa: E402
from autointerp_assets.data.model_files import loadable  # noqa: E402
from autointerp_assets.explain.explainer import explain_latents  # noqa: E402
from autointerp_assets.llm.cache import ResponseCache  # noqa: E402
from autointerp_assets.llm.client import OpenAICompatibleLLM  # noqa: E402
from autointerp_assets.scoring.classify import score_latents  # noqa: E402
from autointerp_assets.store.layout import read_partition  # noqa: E402
from autointerp_assets.store.store import ArtifactStore  # noqa: E402


def main() -> None:
    cfg = load_config()
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=cfg.storage_root)
    parser.add_argument("--layer", default=next(iter(cfg.hookpoints)))
    parser.add_argument("--range", dest="latent_range", default=f"00000-{cfg.latent_range_width - 1:05d}")
    parser.add_argument("--latents", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    store = ArtifactStore(args.root)
    contexts = read_partition(store, "contexts", args.layer, args.latent_range)
    chosen = sorted(contexts["latent"].unique())[: args.latents]
    contexts = contexts.filter(pl.col("latent").is_in(chosen))
    no_skips = pl.DataFrame(schema={"latent": pl.Int64, "reason": pl.Utf8})
    model_dir = loadable("smollm2-135m-instruct")
    work = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    results = {}
    with transformers_serve(model_dir, work / "serve.log") as base_url:
        for conc in args.concurrency:
            llm = OpenAICompatibleLLM(base_url, model_dir, None, max_concurrency=conc, timeout_s=600,
                                      cache=ResponseCache(ArtifactStore(str(work / f"cache-{conc}"))))
            start = time.perf_counter()
            explained = explain_latents(contexts, no_skips, llm, cfg.explainer, cfg.sampling)
            scores = score_latents(contexts, explained, llm, cfg.scorer, cfg.sampling.seed)
            minutes = (time.perf_counter() - start) / 60
            u = llm.usage
            results[conc] = len(chosen) / minutes
            print(f"concurrency {conc}: {len(chosen)} latents in {minutes * 60:.1f} s = {results[conc]:.2f} latents/min; "
                  f"{u.requests} requests, {u.failures} failed; prompt tokens/latent {u.prompt_tokens / len(chosen):.0f}, "
                  f"completion tokens/latent {u.completion_tokens / len(chosen):.0f}; "
                  f"scored ok {int((scores['status'] == 'ok').sum())}")
    if len(results) > 1:
        lo, hi = min(results), max(results)
        print(f"speed-up concurrency {hi} vs {lo}: {results[hi] / results[lo]:.2f}x")


if __name__ == "__main__":
    main()
