"""The in-process LLM on single-window scoring prompts: the batch's common prompt prefix computed
once (`llm.local._batch_inputs`) against every row computing its whole prompt, side by side in one run.

    python bench/bench_local_llm.py [--latents 1] [--batch-size 16]

The requests are the real ones of detection and fuzzing in `single` mode (the local default) over
real text windows (bench_llm_cost's table, 50 + 50 test windows per latent), made once by a
recording LLM and then answered by LocalChatLLM twice with no response cache: prefix sharing on,
then off (`MIN_SHARED_PREFIX` out of reach). Prints seconds, requests/s, the speed-up, and how far
apart the two runs' P(yes) are (bf16: batch numerics differ a little either way).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

import polars as pl  # noqa: E402
from bench_llm_cost import contexts_table  # noqa: E402

from autointerp_assets.config import SamplingConfig, ScorerConfig  # noqa: E402
from autointerp_assets.llm import local  # noqa: E402
from autointerp_assets.report.cost import DryRunLLM  # noqa: E402
from autointerp_assets.scoring.prompts import yes_probability  # noqa: E402
from autointerp_assets.scoring.scores import score_latents  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    llm = local.LocalChatLLM(batch_size=args.batch_size)
    tokenizer, _ = llm._load()
    sampling = SamplingConfig()
    table = contexts_table(tokenizer, args.latents, sampling)
    explained = pl.DataFrame({"latent": range(args.latents), "status": "ok",
                              "explanation": "the word \"return\" in Python code", "reason": None})
    recorder = DryRunLLM()
    score_latents(table, explained, recorder, ScorerConfig(kinds=["detection", "fuzzing"], chance_baseline=False),
                  sampling, mode="single")
    requests = recorder.requests
    llm._complete_many(requests[: args.batch_size])  # warm-up, untimed: the first batch pays for lazy setup
    timings, answers = {}, {}
    for name, min_shared in (("prefix shared", local.MIN_SHARED_PREFIX), ("whole prompts", math.inf)):
        local.MIN_SHARED_PREFIX = min_shared
        start = time.perf_counter()
        answers[name] = llm._complete_many(requests)
        timings[name] = time.perf_counter() - start
        print(f"{name:14s}: {len(requests)} requests in {timings[name]:6.1f} s = "
              f"{len(requests) / timings[name]:.2f} requests/s", flush=True)
    gaps = [abs(yes_probability(a.logprobs) - yes_probability(b.logprobs))
            for a, b in zip(answers["prefix shared"], answers["whole prompts"], strict=True) if a.logprobs and b.logprobs]
    print(f"speed-up {timings['whole prompts'] / timings['prefix shared']:.2f}x at batch {args.batch_size}; "
          f"|P(yes) difference| mean {sum(gaps) / len(gaps):.4f}, max {max(gaps):.4f} over {len(gaps)} answers")


if __name__ == "__main__":
    main()
