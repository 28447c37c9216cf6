"""Materialise one asset partition in this process, as a run launcher would: the crash suite
starts it as a subprocess and kills it.

    python tests/support/stage_runner.py ROOT HOME ASSET [PARTITION] [--endpoint-url URL]
        [--crash-after N --crash-match TEXT]

ROOT is the storage root (a path or s3://…), HOME the Dagster instance's directory (one instance
per HOME: two HOMEs are two Dagster instances). With --crash-after, the process SIGKILLs its own
process group right after its N-th completed file write whose path contains TEXT: a `kill -9`
at an exact point of the stage's writes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

SUPPORT = Path(__file__).parent
sys.path[:0] = [str(SUPPORT.parent), str(SUPPORT.parents[1])]


def crash_after(n: int, match: str) -> None:
    from autointerp_assets.store.store import ArtifactStore

    write = ArtifactStore.write_bytes
    seen = [0]

    def write_then_maybe_die(self: ArtifactStore, rel: str, data: bytes) -> None:
        write(self, rel, data)
        if match in rel:
            seen[0] += 1
            if seen[0] == n:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    ArtifactStore.write_bytes = write_then_maybe_die  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("home")
    parser.add_argument("asset")
    parser.add_argument("partition", nargs="?")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--crash-after", type=int)
    parser.add_argument("--crash-match", default="")
    args = parser.parse_args()
    os.setpgrp()  # its own process group: a crash kills this run and its children, nothing else
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import dagster as dg

    from autointerp_assets.assets import ALL_ASSETS
    from autointerp_assets.partitions import register_partitions
    from resources import Storage, build_resources
    from support.project import small_config

    if args.crash_after:
        crash_after(args.crash_after, args.crash_match)
    cfg = small_config()
    Path(args.home).mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=args.home)
    register_partitions(instance, cfg)
    partition = args.partition
    if partition and "|" in partition:
        layer, latent_range = partition.split("|")
        partition = dg.MultiPartitionKey({"layer": layer, "range": latent_range})
    resources = build_resources(cfg) | {"storage": Storage(root=args.root, endpoint_url=args.endpoint_url)}
    result = dg.materialize(ALL_ASSETS, selection=[args.asset], partition_key=partition, resources=resources,
                            instance=instance, raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
