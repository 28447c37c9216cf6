"""Command line: `python -m autointerp_assets <command>`.

    demo [--through ASSET] [--layer L] [--range R]   materialise one partition end to end
    layers                                           list the layer partitions
    add-layer NAME [NAME ...]                        register layer partitions (hookpoints)

Runs use the persistent Dagster instance in $DAGSTER_HOME (default ./dagster_home),
so `dagster dev` shows them afterwards with their lineage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

STAGES = ["corpus", "sparse_coder", "activations", "latent_shards", "contexts", "explanations", "scores", "report"]


def instance():
    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def demo(layer: str | None, latent_range: str | None, through: str) -> int:
    import dagster as dg

    from .config import project_config
    from .definitions import all_assets, build_resources
    from .partitions import LATENTS_DIM, LAYER_DIM, latent_partitions, layer_partitions

    cfg = project_config()
    layer = layer or next(iter(cfg.hookpoints))
    latent_range = latent_range or latent_partitions.get_partition_keys()[0]
    inst = instance()
    if not inst.has_dynamic_partition(layer_partitions.name, layer):
        inst.add_dynamic_partitions(layer_partitions.name, [layer])
    resources = build_resources(cfg)
    multi = dg.MultiPartitionKey({LAYER_DIM: layer, LATENTS_DIM: latent_range})
    keys = {"corpus": None, "sparse_coder": layer, "activations": layer, "report": layer}
    for stage in STAGES[: STAGES.index(through) + 1]:
        print(f"== {stage} [{keys.get(stage, multi) or 'unpartitioned'}]", flush=True)
        result = dg.materialize(all_assets, selection=[stage], partition_key=keys.get(stage, multi),
                                resources=resources, instance=inst, raise_on_error=False)
        if not result.success:
            print(f"{stage} failed; see the run log in the Dagster UI (dagster dev)", file=sys.stderr)
            return 1
    print(f"done: artefacts under {cfg.storage_root}/, runs in $DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autointerp_assets")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="materialise one partition end to end")
    p_demo.add_argument("--layer")
    p_demo.add_argument("--range", dest="latent_range")
    p_demo.add_argument("--through", choices=STAGES, default="report")
    sub.add_parser("layers", help="list layer partitions")
    p_add = sub.add_parser("add-layer", help="register layer partitions")
    p_add.add_argument("names", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo(args.layer, args.latent_range, args.through)
    from .partitions import layer_partitions

    inst = instance()
    if args.command == "add-layer":
        from .config import project_config

        unknown = [n for n in args.names if n not in project_config().hookpoints]
        if unknown:
            print(f"{unknown} have no sparse coder in the project config; add them under `hookpoints:` first",
                  file=sys.stderr)
            return 2
        inst.add_dynamic_partitions(layer_partitions.name, args.names)
    print("\n".join(inst.get_dynamic_partitions(layer_partitions.name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
