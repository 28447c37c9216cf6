"""Scale on paper: 1M latents x 100M tokens x 32 layers, per stage, from measured figures.

    python bench/scale_on_paper.py [--latents 1048576] [--tokens 1e8] [--layers 32] [--width 4096]

Every MEASURED constant below comes from bench/RESULTS.md (dev, 2026-12-02); every ASSUMED one
is a stated assumption (GPU and LLM-endpoint speed, prices), not a measurement. The printout is
the table in README.md's "Scale on paper".
"""

from __future__ import annotations

import argparse
import math

# MEASURED (bench_scale.py, 131,072 latents x 4.13M tokens, k = 32, Zipf 0.5)
ACT_BYTES_PER_ROW = 7.59  # activations parquet, bucketed: 1,002,433,482 B / 132,072,163 rows
SHARD_BYTES_PER_ROW = 7.01  # latent_shards rows + stats at width 512: 925,988,740 B / 132,072,163 rows
CORPUS_BYTES_PER_TOKEN = 8.12  # committed corpus (token array + window index): 34,070,899 B / 4,194,304
SHARD_US_PER_ROW = 1.41  # latent_shards, 16 ranges of 8,192: 11.58 s per 8.23M-row range (one process, loaded dev)
CONTEXTS_BYTES_PER_LATENT = 10_420  # contexts output: 5.34 MB per 512-latent range
# MEASURED (bench_llm_cost.py, 50 + 50 test windows, the default 10 per prompt, 2026-12-03)
PROMPT_TOKENS_PER_LATENT = 18_277  # explanation 1,445 + detection 8,179 + fuzzing 8,653
UNCACHED_PROMPT_TOKENS_PER_LATENT = 12_271  # past a shared prefix: 1,091 + 5,460 + 5,720
COMPLETION_TOKENS_PER_LATENT = 436  # typical answers (budget 1,040)
REQUESTS_PER_LATENT = 21

# ASSUMED: an 8B, 32-layer subject (Llama-3.1-8B: d_model 4096) on one H100 SXM in bf16.
H100_BF16_FLOPS = 989e12  # dense peak, NVIDIA's datasheet
FORWARD_MFU = 0.40  # forward-only prefill at batch 32 x 256, a typical published figure for 8B models
ENCODE_MFU = 0.60  # the SAE encoder: one large [tokens, 4096] x [4096, 1M] GEMM per layer
D_MODEL, SUBJECT_PARAMS, SUBJECT_GIB = 4096, 8.0e9, 16
H100_GIB, H100_USD_PER_HOUR = 80, 2.50  # on-demand cloud price, order of magnitude
# ASSUMED: the LLM endpoint: an 8B instruct model under vLLM with prefix caching on one H100.
LLM_PREFILL_TOK_S, LLM_DECODE_TOK_S = 40_000, 4_000  # aggregate at concurrency >= 16
LLM_USD_PER_HOUR = H100_USD_PER_HOUR
# Dagster (docs): keep each asset under 100,000 partitions (UI load times).
DAGSTER_PARTITIONS_PER_ASSET = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=1 << 20)
    parser.add_argument("--tokens", type=float, default=1e8)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--width", type=int, default=4096, help="latent_range_width")
    parser.add_argument("--workers", type=int, default=16, help="CPU processes for latent_shards/contexts")
    parser.add_argument("--contexts-s-per-latent", type=float, required=True, help="measured, bench_scale")
    parser.add_argument("--run-kib", type=float, required=True, help="measured, bench_run_storage")
    args = parser.parse_args()
    n, t, layers = args.latents, args.tokens, args.layers
    rows = t * args.k  # per layer
    ranges = math.ceil(n / args.width)
    gb = 1e9

    print(f"{n:,} latents x {t:,.0f} tokens x {layers} layers, k = {args.k}, ranges of {args.width}: "
          f"{ranges} ranges/layer, {ranges * layers:,} partitions per range-keyed asset "
          f"({ranges * layers / DAGSTER_PARTITIONS_PER_ASSET:.0%} of Dagster's 100k guidance)")
    # activations: layers per pass limited by GPU memory (encoder weights in bf16)
    enc_gib = n * D_MODEL * 2 / 2**30
    per_pass = max(1, int((H100_GIB * 0.9 - SUBJECT_GIB) // enc_gib))
    passes = math.ceil(layers / per_pass)
    fwd_s = passes * t * 2 * SUBJECT_PARAMS * 0.5 / (H100_BF16_FLOPS * FORWARD_MFU)  # to the group's deepest layer: ~half
    enc_s = layers * t * 2 * D_MODEL * n / (H100_BF16_FLOPS * ENCODE_MFU)
    act_h = (fwd_s + enc_s) / 3600
    print(f"activations  (estimate) encoder {enc_gib:.1f} GiB/layer -> {per_pass} layers per pass, {passes} passes; "
          f"forward {fwd_s / 3600:.1f} h + encode {enc_s / 3600:.1f} h = {act_h:.1f} GPU-h, ${act_h * H100_USD_PER_HOUR:,.0f}; "
          f"host writes {layers * rows / (fwd_s + enc_s) / 1e6:.1f}M rows/s; "
          f"disk {layers * rows * ACT_BYTES_PER_ROW / gb:,.0f} GB "
          f"+ corpus {t * CORPUS_BYTES_PER_TOKEN / gb:.1f} GB")
    shard_h = layers * rows * SHARD_US_PER_ROW / 1e6 / 3600
    print(f"latent_shards (measured rate) {rows / ranges / 1e6:.1f}M rows/range, {shard_h:,.0f} process-h "
          f"({shard_h / args.workers:.1f} h on {args.workers} workers); reads each layer once "
          f"({rows * ACT_BYTES_PER_ROW / gb:.1f} GB/layer); disk {layers * rows * SHARD_BYTES_PER_ROW / gb:,.0f} GB")
    ctx_h = layers * n * args.contexts_s_per_latent / 3600
    print(f"contexts     (measured rate) {args.contexts_s_per_latent * 1e3:.0f} ms/latent: {ctx_h:,.0f} process-h "
          f"({ctx_h / args.workers:,.0f} h on {args.workers} workers); disk {layers * n * CONTEXTS_BYTES_PER_LATENT / gb:,.0f} GB")
    latents = layers * n
    llm_s = latents * (UNCACHED_PROMPT_TOKENS_PER_LATENT / LLM_PREFILL_TOK_S + COMPLETION_TOKENS_PER_LATENT / LLM_DECODE_TOK_S)
    print(f"explanations+scores (assumed endpoint) {latents:,} latents x {PROMPT_TOKENS_PER_LATENT:,} prompt tokens "
          f"= {latents * PROMPT_TOKENS_PER_LATENT / 1e12:.2f}T ({latents * UNCACHED_PROMPT_TOKENS_PER_LATENT / 1e12:.2f}T "
          f"uncached), {latents * COMPLETION_TOKENS_PER_LATENT / 1e9:.1f}B completion; {latents * REQUESTS_PER_LATENT / 1e9:.2f}B "
          f"requests; {llm_s / 3600:,.0f} endpoint-h = {llm_s / 86400:,.0f} days on one, ${llm_s / 3600 * LLM_USD_PER_HOUR:,.0f}")
    runs = 4 * ranges * layers + 1
    print(f"Dagster: a backfill of latent_shards..scores = {runs:,} runs (one per partition per asset; activations: 1); "
          f"run storage {runs * args.run_kib / 2**20:,.1f} GiB at {args.run_kib:.0f} KiB/run")


if __name__ == "__main__":
    main()
