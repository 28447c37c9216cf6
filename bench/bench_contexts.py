"""`contexts` cost against corpus size: the same latents' examples in a corpus 1x and 10x as big.

    python bench/bench_contexts.py [--tokens 131072] [--scale 10] [--latents 2048] [--width 64]

The small corpus has the default corpus's size (corpus.max_tokens = 131,072 tokens); the large
one holds the same windows plus (scale - 1) times as many more, so the activations (synthetic,
k = 32 per token over the small corpus's windows) and hence every latent's activating examples
are identical, and only what `contexts` must not depend on, the corpus size, changes. Each
size is materialised through Dagster in a fresh process (`latent_shards`, then the measured
`contexts`, one range of --width latents); printed side by side: the contexts run's wall time
and the process's peak RSS (model and tokenizer loaded first in both: a constant).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LAYER = "layers.6"

MEASURE = """
import json, sys, time
sys.path[:0] = [{root!r}, {bench!r}]
import dagster as dg
from autointerp_assets.assets import ALL_ASSETS
from autointerp_assets.config import ProjectConfig, TopKCoderConfig
from autointerp_assets.partitions import partition_key
from resources import Storage, build_resources
cfg = ProjectConfig(hookpoints={{"{layer}": TopKCoderConfig(kind="topk", path="synthetic", n_latents={latents})}},
                    latent_range_width={width}, storage_root={data!r})
inst = dg.DagsterInstance.ephemeral()
inst.add_dynamic_partitions("layer", ["{layer}"]); inst.add_dynamic_partitions("latent_range", ["{key}"])
res = build_resources(cfg) | {{"storage": Storage(root={data!r})}}
res["subject_model"].load()  # the tokenizer's model: a constant, not part of what is measured
quiet = {{"loggers": {{"console": {{"config": {{"log_level": "WARNING"}}}}}}}}
dg.materialize(ALL_ASSETS, selection=["latent_shards"], partition_key=partition_key("{layer}", "{key}"),
               resources=res, instance=inst, run_config=quiet)
start = time.perf_counter()
r = dg.materialize(ALL_ASSETS, selection=["contexts"], partition_key=partition_key("{layer}", "{key}"),
                   resources=res, instance=inst, run_config=quiet)
seconds = time.perf_counter() - start
meta = r.get_asset_materialization_events()[0].materialization.metadata
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024  # not ru_maxrss: inherited
print(json.dumps({{"seconds": seconds, "peak_rss_mib": hwm,
                  "n_examples": meta["n_examples"].value, "corpus_bytes_read": meta["corpus_bytes_read"].value}}))
"""


def main() -> None:
    from bench_scale import synthetic_corpus, write_synthetic_activations

    from autointerp_assets.data.corpus import Corpus
    from autointerp_assets.store.layout import write_corpus
    from autointerp_assets.store.store import ArtifactStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=131_072)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--latents", type=int, default=2048)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-contexts-"))
    big = synthetic_corpus(args.tokens * args.scale, seed=0)
    n_small = args.tokens // 64
    small = Corpus(np.ascontiguousarray(big.tokens[:n_small]), big.windows.head(n_small), "small", 0)
    key = f"00000-{args.width - 1:05d}"
    for label, corpus in (("1x", small), (f"{args.scale}x", big)):
        store = ArtifactStore(str(work / label))
        write_corpus(store, corpus)
        # Activations over the small corpus's windows only: the same examples at both sizes.
        write_synthetic_activations(store, args.latents, n_small, 32, 0.5, args.width, 1 << 20, seed=1)
    results: dict[str, list[dict]] = {"1x": [], f"{args.scale}x": []}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for r in range(args.rounds):  # alternate which size goes first
        for label in (list(results) if r % 2 == 0 else list(results)[::-1]):
            code = MEASURE.format(root=str(ROOT), bench=str(ROOT / "bench"), layer=LAYER, latents=args.latents,
                                  width=args.width, data=str(work / label), key=key)
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
            results[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for label, runs in results.items():
        corpus_tokens = args.tokens * (args.scale if label != "1x" else 1)
        print(f"corpus {label:>4} ({corpus_tokens:>10,} tokens): contexts {np.median([x['seconds'] for x in runs]):6.2f} s, "
              f"peak RSS {np.median([x['peak_rss_mib'] for x in runs]):7.0f} MiB, "
              f"{runs[0]['n_examples']} examples, {np.median([x['corpus_bytes_read'] for x in runs]) / 2**20:.1f} MiB "
              f"fetched from storage (median of {len(runs)})")
    big_label = f"{args.scale}x"
    ratio_t = np.median([x["seconds"] for x in results[big_label]]) / np.median([x["seconds"] for x in results["1x"]])
    ratio_m = np.median([x["peak_rss_mib"] for x in results[big_label]]) / np.median(
        [x["peak_rss_mib"] for x in results["1x"]])
    print(f"{big_label} corpus / 1x corpus: time {ratio_t:.2f}, peak RSS {ratio_m:.2f}")


if __name__ == "__main__":
    main()
