"""latent_shards and contexts at scale, through Dagster, over every latent range of one layer.

    python bench/bench_scale.py [--latents 131072] [--tokens 4194304] [--ranges 16 64 256]
                                [--contexts-every 1] [--root DIR]

No model runs: synthetic activations shaped like a real SAE's (k = 32 active latents per token,
Zipf-like latent frequencies with exponent --zipf, frequency ranks shuffled over latent ids, so
each range holds a mix of frequent and rare latents) and a synthetic corpus (token ids Zipf
over SmolLM2's vocabulary) are written through the real writers: `write_corpus` and the
activations run writer, bucketed at the narrowest range width, committed by their manifests.

Then, for each range count R in --ranges (the layer cut into R ranges of n_latents / R),
every range's `latent_shards` partition is materialised through Dagster, one run each, in one
process; then `contexts` for every --contexts-every'th range of the widest split (the real
sampling, which loads SmolLM2's tokenizer). Printed per R: time per range, activation bytes
read per range (from each run's metadata), peak RSS of the process, and the total bytes read
by all R ranges as a multiple of the layer's activation bytes. The cost per range should be
its share, whatever R: total <= 1.2x the layer at every R, peak RSS not growing with R.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from autointerp_assets.assets import ALL_ASSETS  # noqa: E402
from autointerp_assets.config import ProjectConfig, TopKCoderConfig  # noqa: E402
from autointerp_assets.data.corpus import ANALYSIS, SAE_TRAIN, Corpus  # noqa: E402
from autointerp_assets.partitions import latent_range_keys, partition_key  # noqa: E402
from autointerp_assets.store.activations import ActivationRunWriter  # noqa: E402
from autointerp_assets.store.layout import write_corpus  # noqa: E402
from autointerp_assets.store.store import ArtifactStore  # noqa: E402
from resources import Storage, build_resources  # noqa: E402

LAYER = "layers.6"
VOCAB = 49_152
CTX = 64


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_corpus(n_tokens: int, seed: int) -> Corpus:
    """Token ids Zipf-distributed over the vocabulary; every window analysed (no SAE-training split)."""
    rng = np.random.default_rng(seed)
    n_seq = n_tokens // CTX
    ranks = np.minimum(rng.zipf(1.2, n_seq * CTX), VOCAB) - 1
    tokens = rng.permutation(VOCAB)[ranks].astype(np.int32).reshape(n_seq, CTX)  # frequent ids scattered
    windows = pl.DataFrame({"seq": np.arange(n_seq, dtype=np.int64), "split": [ANALYSIS] * n_seq,
                            "doc_id": [f"synthetic#{i // 16}" for i in range(n_seq)],
                            "offset": (np.arange(n_seq, dtype=np.int64) % 16) * CTX})
    assert SAE_TRAIN not in windows["split"]
    return Corpus(tokens, windows, f"synthetic-{seed}-{n_tokens}", n_train=0)


def write_synthetic_activations(store: ArtifactStore, n_latents: int, n_seq: int, k: int, zipf: float,
                                bucket_width: int, chunk_tokens: int, seed: int) -> dict:
    """k distinct latents per token (duplicates of a draw dropped), frequencies ~ rank^-zipf."""
    rng = np.random.default_rng(seed)
    p = np.arange(1, n_latents + 1, dtype=np.float64) ** -zipf
    cdf = np.cumsum(p / p.sum())
    latent_of_rank = rng.permutation(n_latents).astype(np.int32)
    writer = ActivationRunWriter(store, LAYER, n_latents, bucket_width)
    width = CTX - 1  # positions 1..63 are analysed, as in the real stage
    windows_per_chunk = max(1, chunk_tokens // width)
    nnz = n_tokens = 0
    for index, lo in enumerate(range(0, n_seq, windows_per_chunk)):
        seqs = np.arange(lo, min(lo + windows_per_chunk, n_seq), dtype=np.int64)
        t = len(seqs) * width
        draws = np.sort(latent_of_rank[np.minimum(np.searchsorted(cdf, rng.random((t, k))), n_latents - 1)], axis=1)
        keep = np.ones_like(draws, dtype=bool)
        keep[:, 1:] = draws[:, 1:] != draws[:, :-1]
        token, _ = np.nonzero(keep)
        rows = pl.DataFrame({"seq": seqs[token // width], "pos": (token % width + 1).astype(np.int32),
                             "latent": draws[keep], "value": rng.lognormal(0.0, 0.7, len(token)).astype(np.float32)})
        writer.write_chunk(index, rows)
        nnz += rows.height
        n_tokens += t
    return writer.commit({"n_tokens": n_tokens, "nnz": nnz, "model_id": "synthetic", "model_revision": "synthetic",
                          "corpus_hash": f"synthetic-{seed}", "coder_kind": "topk", "coder_id": "synthetic",
                          "coder_hash": f"zipf-{zipf}"})


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def materialise(asset: str, key: dg.MultiPartitionKey, resources: dict, instance: dg.DagsterInstance) -> dict:
    result = dg.materialize(ALL_ASSETS, selection=[asset], partition_key=key, resources=resources,
                            instance=instance, run_config=QUIET)
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=131_072)
    parser.add_argument("--tokens", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--zipf", type=float, default=0.5, help="latent frequency ~ rank^-zipf")
    parser.add_argument("--ranges", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--contexts-every", type=int, default=1, help="contexts for every n-th range of the widest split")
    parser.add_argument("--chunk-tokens", type=int, default=1 << 20, help="activation_chunk_tokens")
    parser.add_argument("--root", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    store = ArtifactStore(str(root))
    finest = args.latents // max(args.ranges)
    started = time.perf_counter()
    corpus = synthetic_corpus(args.tokens, seed=0)
    write_corpus(store, corpus)
    manifest = write_synthetic_activations(store, args.latents, corpus.tokens.shape[0], args.k, args.zipf, finest,
                                           args.chunk_tokens, seed=1)
    layer_bytes = manifest["total_bytes"]
    n_files = sum(len(f) for f in manifest["buckets"].values())
    print(f"synthetic layer: {args.latents} latents x {manifest['n_tokens']:,} tokens, {manifest['nnz']:,} rows, "
          f"{layer_bytes / 2**20:,.0f} MiB in {n_files} files (buckets of {finest}); "
          f"corpus {corpus.n_tokens:,} tokens; written in {time.perf_counter() - started:.0f} s", flush=True)

    report: dict = {"latents": args.latents, "tokens": manifest["n_tokens"], "rows": manifest["nnz"],
                    "layer_bytes": layer_bytes, "files": n_files, "splits": []}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("layer", [LAYER])
    for n_ranges in sorted(args.ranges):
        width = args.latents // n_ranges
        cfg = ProjectConfig(hookpoints={LAYER: TopKCoderConfig(kind="topk", path="synthetic", n_latents=args.latents)},
                            latent_range_width=width, storage_root=str(root))
        resources = build_resources(cfg) | {"storage": Storage(root=str(root))}
        keys = latent_range_keys(args.latents, width)
        instance.add_dynamic_partitions("latent_range", keys)
        seconds, read = [], []
        for key in keys:
            start = time.perf_counter()
            meta = materialise("latent_shards", partition_key(LAYER, key), resources, instance)
            seconds.append(time.perf_counter() - start)
            read.append(meta["activation_bytes_read"])
        split = {"ranges": n_ranges, "width": width, "median_s_per_range": statistics.median(seconds),
                 "median_bytes_per_range": statistics.median(read), "total_bytes_read": sum(read),
                 "total_over_layer": sum(read) / layer_bytes, "peak_rss_mib": peak_rss_mib()}
        report["splits"].append(split)
        print(f"latent_shards, {n_ranges:4d} ranges of {width:6d}: {split['median_s_per_range']:6.2f} s/range, "
              f"{split['median_bytes_per_range'] / 2**20:8.2f} MiB read/range, total read "
              f"{split['total_over_layer']:.3f}x the layer, peak RSS so far {split['peak_rss_mib']:,.0f} MiB", flush=True)

    n_ranges = max(args.ranges)
    width = args.latents // n_ranges
    cfg = ProjectConfig(hookpoints={LAYER: TopKCoderConfig(kind="topk", path="synthetic", n_latents=args.latents)},
                        latent_range_width=width, storage_root=str(root))
    resources = build_resources(cfg) | {"storage": Storage(root=str(root))}
    chosen = latent_range_keys(args.latents, width)[:: args.contexts_every]
    rows = []
    for i, key in enumerate(chosen):
        start = time.perf_counter()
        meta = materialise("contexts", partition_key(LAYER, key), resources, instance)
        rows.append({"range": key, "s": time.perf_counter() - start, "corpus_bytes_read": meta["corpus_bytes_read"],
                     "examples": meta["n_examples"], "rss_mib": peak_rss_mib()})
        if i + 1 in (1, 16, 64, 256) or i + 1 == len(chosen):
            last = rows[1:] or rows  # the first run also loads the tokenizer
            print(f"contexts after {i + 1:4d} ranges of {width}: {statistics.median(r['s'] for r in last):6.2f} s/range, "
                  f"{statistics.median(r['corpus_bytes_read'] for r in last) / 2**20:7.2f} MiB of corpus read/range "
                  f"(corpus {corpus.tokens.nbytes / 2**20:,.0f} MiB), peak RSS {peak_rss_mib():,.0f} MiB", flush=True)
    report["contexts"] = rows
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
