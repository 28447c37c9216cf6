"""LLM-stage throughput (explain + detection + fuzzing) at several concurrencies against a real
local OpenAI-compatible server, side by side in one run.

    python bench/bench_llm.py [--latents 2] [--concurrency 1 4 16] [--continuous-batching]

Starts `transformers serve` on the local SmolLM2-135M-Instruct (with --continuous-batching the
server batches concurrent requests, with a KV cache of --kv-tokens; without it it answers them
one at a time). The latents'
windows are real text (bench_llm_cost's table: our explanation set, 50 + 50 test windows), so
prompts have realistic lengths. Each level runs the real pipeline code (`explain_latents`,
`score_latents`) through `OpenAICompatibleLLM` with no response cache, so every level makes every
call. Printed per level: requests/s, latents/min, failures; then each level's speed-up over the
lowest concurrency.

With --fake-latency S the server is instead tests/support's FaultServer answering every request
after S seconds, concurrently (a latency-bound endpoint, like a remote API or a GPU server with
spare batch room): that measures what the client's concurrency delivers when the server can
take it, not any server's batching.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from bench_llm_cost import contexts_table  # noqa: E402
from support.fake_openai_server import FaultServer  # noqa: E402
from support.transformers_server import transformers_serve  # noqa: E402

from autointerp_assets.config import ExplainerConfig, SamplingConfig, ScorerConfig  # noqa: E402
from autointerp_assets.data.model_files import loadable  # noqa: E402
from autointerp_assets.explain.explainer import explain_latents  # noqa: E402
from autointerp_assets.llm.client import OpenAICompatibleLLM  # noqa: E402
from autointerp_assets.scoring.scores import score_latents  # noqa: E402


def fake_answer(body: dict) -> str:
    """A well-formed answer: labels, one per example, for a scoring prompt; else an explanation."""
    last = body["messages"][-1]["content"]
    if "Reply with a list of exactly" not in last:
        return "Explanation: the word self"
    n = len(re.findall(r"^Example \d+:", last, flags=re.M))
    return "[" + ", ".join("10"[i % 2] for i in range(n)) + "]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--continuous-batching", action="store_true")
    parser.add_argument("--fake-latency", type=float, help="a FaultServer answering after this many seconds")
    parser.add_argument("--kv-tokens", type=int, default=24_576, help="KV cache size with --continuous-batching")
    args = parser.parse_args()
    import polars as pl
    from transformers import AutoTokenizer

    model_dir = loadable("smollm2-135m-instruct")
    table = contexts_table(AutoTokenizer.from_pretrained(model_dir), args.latents, SamplingConfig())
    no_skips = pl.DataFrame(schema={"latent": pl.Int64, "reason": pl.Utf8})
    scorer = ScorerConfig(kinds=["detection", "fuzzing"])
    work = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    # A bounded KV cache: without --cb-num-blocks, on CPU, the server reserves most of the RAM (14 GiB seen here).
    extra = ["--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", str(args.kv_tokens // 32),
             "--cb-max-batch-tokens", "4096"] if args.continuous_batching else []
    rates: dict[int, float] = {}

    def run(base_url: str, model: str) -> None:
        for conc in args.concurrency:
            llm = OpenAICompatibleLLM(base_url, model, None, max_concurrency=conc, timeout_s=900, cache=None)
            start = time.perf_counter()
            explained = explain_latents(table, no_skips, llm, ExplainerConfig(), SamplingConfig())
            scores = score_latents(table, explained, llm, scorer, SamplingConfig(), mode="list")
            seconds = time.perf_counter() - start
            u = llm.usage
            rates[conc] = u.requests / seconds
            print(f"concurrency {conc:2d}: {u.requests} requests in {seconds:6.1f} s = {rates[conc]:.2f} requests/s, "
                  f"{args.latents / seconds * 60:.2f} latents/min; {u.failures} failed; "
                  f"prompt tokens {u.prompt_tokens}, completion tokens {u.completion_tokens}; "
                  f"scores ok {int((scores['status'] == 'ok').sum())}/{scores.height}", flush=True)

    if args.fake_latency:
        server = FaultServer()
        server.policy, server.hang_s = (lambda n, body: "hang"), args.fake_latency
        server.answer = fake_answer
        try:
            run(server.base_url, "fake")
        finally:
            server.close()
    else:
        with transformers_serve(model_dir, work / "serve.log", extra_args=extra) as base_url:
            run(base_url, model_dir)
    base = min(rates)
    for conc, rate in rates.items():
        print(f"concurrency {conc} / {base}: {rate / rates[base]:.2f}x requests/s")


if __name__ == "__main__":
    main()
