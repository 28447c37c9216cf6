"""Dagster's own storage per run: the bytes one `latent_shards` run adds to a persistent instance.

    python bench/bench_run_storage.py --root DIR [--latents 131072 --width 512 --runs 8]

Needs a layer written by bench_scale.py under --root (`bench_scale.py --root DIR`). Materialises
--runs ranges of `latent_shards`, each as its own run (as a backfill launches them), into a
fresh SQLite instance (the default one-machine instance: runs, event log, schedules under
$DAGSTER_HOME) and prints the bytes the instance directory grew by per run. This is what a
backfill of N partitions costs in run storage (SQLite here; Postgres stores the same rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import dagster as dg  # noqa: E402
from bench_scale import LAYER, materialise, resources_for  # noqa: E402

from autointerp_assets.partitions import latent_range_keys, partition_key  # noqa: E402


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--latents", type=int, default=131_072)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-runstore-"))
    keys = latent_range_keys(args.latents, args.width)
    resources = resources_for(args.root, args.latents, args.width)
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        instance.add_dynamic_partitions("layer", [LAYER])
        instance.add_dynamic_partitions("latent_range", keys)
        materialise("latent_shards", partition_key(LAYER, keys[0]), resources, instance)  # schema, first rows
        before = tree_bytes(home)
        for key in keys[1 : args.runs + 1]:
            materialise("latent_shards", partition_key(LAYER, key), resources, instance)
        grown = tree_bytes(home) - before
        n_events = len(instance.get_records_for_run(instance.get_runs(limit=1)[0].run_id, limit=100_000).records)
    print(f"{args.runs} latent_shards runs added {grown / 1024:,.0f} KiB to the SQLite instance: "
          f"{grown / args.runs / 1024:,.1f} KiB per run; {n_events} event-log records in the last run; "
          f"{len(keys)} range keys registered")


if __name__ == "__main__":
    main()
