"""latent_shards and contexts at scale, through Dagster, over every latent range of one layer.

    python bench/bench_scale.py [--latents 131072] [--tokens 4194304] [--ranges 16 64 256]
                                [--contexts-every 1] [--root DIR]

No model runs: synthetic activations shaped like a real SAE's (k = 32 active latents per token,
Zipf-like latent frequencies with exponent --zipf, frequency ranks shuffled over latent ids, so
each range holds a mix of frequent and rare latents) and a synthetic corpus (token ids Zipf
over SmolLM2's vocabulary) are written through the real writers: `write_corpus` and the
activations run writer, bucketed at the narrowest range width, committed by their manifests.

Then, for each range count R in --ranges (the layer cut into R ranges of n_latents / R), a
fresh process materialises every range's `latent_shards` partition through Dagster, one run
each; the finest split's process then runs `contexts` for every --contexts-every'th range (the
real sampling; it loads SmolLM2 for its tokenizer). Printed per R: time per range, activation
bytes read per range (from each run's metadata), rows per range, the process's peak RSS, and
the bytes read by all R ranges as a multiple of the layer's activation bytes; for the finest
split also the per-range cost over ranges 1-16, 17-64 and 65-256. A range's cost should be its
share: all ranges together read the layer once (<= 1.2x) at every R, and nothing grows with
the number of ranges processed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that across fork and exec,
    so a child started by a big parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


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


def resources_for(root: Path, n_latents: int, width: int) -> dict:
    cfg = ProjectConfig(hookpoints={LAYER: TopKCoderConfig(kind="topk", path="synthetic", n_latents=n_latents)},
                        latent_range_width=width, storage_root=str(root))
    return build_resources(cfg) | {"storage": Storage(root=str(root))}


def run_split(args: argparse.Namespace) -> dict:
    """In this process: every range's latent_shards (and, with --contexts-every, contexts) for one split."""
    width = args.latents // args.split
    resources = resources_for(args.root, args.latents, width)
    keys = latent_range_keys(args.latents, width)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("layer", [LAYER])
    instance.add_dynamic_partitions("latent_range", keys)
    shards = []
    for key in keys:
        start = time.perf_counter()
        meta = materialise("latent_shards", partition_key(LAYER, key), resources, instance)
        shards.append({"range": key, "s": time.perf_counter() - start, "bytes": meta["activation_bytes_read"],
                       "rows": meta["n_rows"]})
    out = {"ranges": args.split, "width": width, "shards": shards, "shards_peak_rss_mib": peak_rss_mib()}
    if args.contexts_every:
        contexts = []
        for key in keys[:: args.contexts_every]:
            start = time.perf_counter()
            meta = materialise("contexts", partition_key(LAYER, key), resources, instance)
            contexts.append({"range": key, "s": time.perf_counter() - start, "bytes": meta["corpus_bytes_read"],
                             "examples": meta["n_examples"]})
        out |= {"contexts": contexts, "peak_rss_mib": peak_rss_mib()}
    return out


def summarise(split: dict, layer_bytes: int) -> None:
    shards, r, w = split["shards"], split["ranges"], split["width"]
    total = sum(x["bytes"] for x in shards)
    print(f"latent_shards, {r:4d} ranges of {w:6d} latents: {statistics.median(x['s'] for x in shards):6.2f} s/range, "
          f"{statistics.median(x['bytes'] for x in shards) / 2**20:8.2f} MiB read/range, "
          f"{statistics.median(x['rows'] for x in shards):12,.0f} rows/range; all ranges read "
          f"{total / layer_bytes:.3f}x the layer; peak RSS {split['shards_peak_rss_mib']:,.0f} MiB", flush=True)
    if r == 256:  # the same split seen as ranges are processed: the per-range cost does not grow
        for lo, hi in ((0, 16), (16, 64), (64, 256)):
            part = shards[lo:hi]
            print(f"    ranges {lo + 1:3d}-{hi:3d}: {statistics.median(x['s'] for x in part):6.2f} s/range, "
                  f"{statistics.median(x['bytes'] for x in part) / 2**20:6.2f} MiB/range; cumulative read "
                  f"{sum(x['bytes'] for x in shards[:hi]) / layer_bytes:.3f}x the layer")
    if split.get("contexts"):
        runs = split["contexts"][1:] or split["contexts"]  # the first also loads the tokenizer's model
        print(f"contexts, {len(split['contexts'])} of the {r} ranges of {w}: "
              f"{statistics.median(x['s'] for x in runs):6.2f} s/range, "
              f"{statistics.median(x['bytes'] for x in runs) / 2**20:6.2f} MiB of shard + corpus read/range, "
              f"{statistics.median(x['examples'] for x in runs):,.0f} examples/range; "
              f"peak RSS {split['peak_rss_mib']:,.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=131_072)
    parser.add_argument("--tokens", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--zipf", type=float, default=0.5, help="latent frequency ~ rank^-zipf")
    parser.add_argument("--ranges", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--contexts-every", type=int, default=16,
                        help="contexts for every n-th range of the finest split (0: none)")
    parser.add_argument("--chunk-tokens", type=int, default=1 << 20, help="activation_chunk_tokens")
    parser.add_argument("--root", type=Path, help="keep the data here (default: a temp dir)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse", action="store_true", help="keep the data already under --root")
    parser.add_argument("--split", type=int, help=argparse.SUPPRESS)  # internal: run one split in this process
    args = parser.parse_args()
    if args.split:
        print(json.dumps(run_split(args)))
        return

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    store = ArtifactStore(str(root))
    finest = args.latents // max(args.ranges)
    started = time.perf_counter()
    corpus = synthetic_corpus(args.tokens, seed=0)
    if args.reuse and store.exists(f"activations/{LAYER}/manifest.json"):
        manifest = store.read_json(f"activations/{LAYER}/manifest.json")
    else:
        write_corpus(store, corpus)
        manifest = write_synthetic_activations(store, args.latents, corpus.tokens.shape[0], args.k, args.zipf,
                                               finest, args.chunk_tokens, seed=1)
    layer_bytes = manifest["total_bytes"]
    n_files = sum(len(f) for f in manifest["buckets"].values())
    print(f"synthetic layer: {args.latents} latents x {manifest['n_tokens']:,} tokens, {manifest['nnz']:,} rows, "
          f"{layer_bytes / 2**20:,.0f} MiB in {n_files} files (buckets of {finest}); "
          f"corpus {corpus.n_tokens:,} tokens ({corpus.tokens.nbytes / 2**20:,.0f} MiB); "
          f"written in {time.perf_counter() - started:.0f} s", flush=True)
    del corpus
    report: dict = {"latents": args.latents, "tokens": manifest["n_tokens"], "rows": manifest["nnz"],
                    "layer_bytes": layer_bytes, "files": n_files, "splits": []}
    for n_ranges in sorted(args.ranges):  # each split in a fresh process: its own peak RSS
        contexts = args.contexts_every if n_ranges == max(args.ranges) else 0
        cmd = [sys.executable, __file__, "--split", str(n_ranges), "--root", str(root), "--latents", str(args.latents),
               "--contexts-every", str(contexts)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        split = json.loads(out.strip().splitlines()[-1])
        report["splits"].append(split)
        summarise(split, layer_bytes)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
