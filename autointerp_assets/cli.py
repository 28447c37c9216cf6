"""The command line: `python -m autointerp_assets <command>`.

    demo [--through ASSET] [--layer L] [--range R]   materialise one partition end to end
    layers                                           list the layer partitions
    add-layer NAME [NAME ...]                        register layer partitions (hookpoints)
    review LAYER RANGE LATENT accept|reject|edit [--text T] [--reviewer NAME]
                                                     record a human verdict on an explanation
    import-explanations LAYER RANGE FILE [--by NAME] store a .csv/.parquet of (latent, explanation)
                                                     as that explanations partition (then score it)

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
    """The persistent instance in $DAGSTER_HOME, set up with the repo's dagster.yaml on first use."""
    import shutil

    import dagster as dg

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    template = Path(__file__).resolve().parents[1] / "dagster.yaml"
    if template.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(template, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def demo(layer: str | None, latent_range: str | None, through: str) -> int:
    import dagster as dg

    from resources import build_resources

    from .assets import ALL_ASSETS
    from .config import load_config
    from .partitions import layer_ranges, partition_key, register_partitions

    cfg = load_config()
    layer = layer or next(iter(cfg.hookpoints))
    latent_range = latent_range or layer_ranges(cfg, layer)[0]
    inst = instance()
    register_partitions(inst, cfg, [layer])
    resources = build_resources(cfg)
    multi = partition_key(layer, latent_range)
    keys = {"corpus": None, "sparse_coder": layer, "activations": layer, "report": layer}
    for stage in STAGES[: STAGES.index(through) + 1]:
        print(f"== {stage} [{keys.get(stage, multi) or 'unpartitioned'}]", flush=True)
        result = dg.materialize(ALL_ASSETS, selection=[stage], partition_key=keys.get(stage, multi),
                                resources=resources, instance=inst, raise_on_error=False)
        if not result.success:
            print(f"{stage} failed; see the run log in the Dagster UI (dagster dev)", file=sys.stderr)
            return 1
    print(f"done: artefacts under {cfg.storage_root}/, runs in $DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    return 0


def review(layer: str, latent_range: str, latent: int, verdict: str, text: str | None, reviewer: str) -> int:
    """Append the verdict to reviews/<layer>/<range>.parquet and record it on the explanations
    partition as an observation, so the UI shows who reviewed what, when."""
    import dagster as dg

    from resources import build_resources

    from .config import load_config
    from .partitions import partition_key
    from .report.review import ReviewError, add_review
    from .store import layout
    from .store.store import partition_path

    store = build_resources(load_config())["storage"].store()
    explanations = layout.read_partition(store, "explanations", layer, latent_range)
    path = partition_path("reviews", layer, latent_range)
    history = store.read_parquet(path) if store.exists(path) else None
    try:
        updated = add_review(history, explanations, latent, verdict, reviewer, text)  # type: ignore[arg-type]
    except ReviewError as e:
        print(f"review not recorded: {e}", file=sys.stderr)
        return 2
    store.write_parquet(path, updated)
    last = updated.row(-1, named=True)
    instance().report_runless_asset_event(dg.AssetObservation(
        asset_key="explanations", partition=str(partition_key(layer, latent_range)),
        metadata={"review_latent": latent, "review_verdict": verdict, "reviewer": reviewer,
                  "explanation": last["explanation"], "original_explanation": last["original_explanation"],
                  "prompt_version": last["prompt_version"], "reviews_path": dg.MetadataValue.path(store.uri(path))},
    ))
    print(f"{verdict} of latent {latent} recorded by {reviewer} in {store.uri(path)}")
    return 0


def import_explanations(layer: str, latent_range: str, path: str, by: str) -> int:
    """Check the file whole, then materialise the explanations partition from it through Dagster
    (the run records the source, its hash and who imported it)."""
    import dagster as dg

    from resources import build_resources

    from .assets import ALL_ASSETS
    from .config import load_config
    from .explain import imported
    from .partitions import parse_latent_range, partition_key, register_partitions

    cfg = load_config()
    storage = build_resources(cfg)["storage"]
    uri = path if "://" in path else str(Path(path).resolve())
    try:
        imported.explanations_table(imported.read_file(uri, storage.store().storage_options),
                                    parse_latent_range(latent_range))
    except imported.ExplanationImportError as e:
        print(f"nothing imported: {e}", file=sys.stderr)
        return 2
    inst = instance()
    register_partitions(inst, cfg, [layer])
    result = dg.materialize(
        ALL_ASSETS, selection=["explanations"], partition_key=partition_key(layer, latent_range),
        resources=build_resources(cfg), instance=inst, raise_on_error=False,
        run_config={"ops": {"explanations": {"config": {"import_from": uri, "imported_by": by}}}})
    if not result.success:
        print("import failed; see the run log in the Dagster UI (dagster dev)", file=sys.stderr)
        return 1
    print(f"imported {uri} as explanations[{layer}|{latent_range}]; materialise scores for that partition next")
    return 0


def main(argv: list[str] | None = None) -> int:
    import warnings

    import dagster as dg

    # The beta/preview APIs we rely on (multi-partition mappings, partitioned checks) warn on
    # every import; operators need the run's own output, not that.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    parser = argparse.ArgumentParser(prog="python -m autointerp_assets")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="materialise one partition end to end")
    p_demo.add_argument("--layer")
    p_demo.add_argument("--range", dest="latent_range")
    p_demo.add_argument("--through", choices=STAGES, default="report")
    sub.add_parser("layers", help="list layer partitions")
    p_add = sub.add_parser("add-layer", help="register layer partitions")
    p_add.add_argument("names", nargs="+")
    p_review = sub.add_parser("review", help="accept, reject or edit an explanation")
    p_review.add_argument("layer")
    p_review.add_argument("latent_range")
    p_review.add_argument("latent", type=int)
    p_review.add_argument("verdict", choices=["accept", "reject", "edit"])
    p_review.add_argument("--text", help="the edited explanation (with 'edit')")
    p_review.add_argument("--reviewer", default=os.environ.get("USER", ""))
    p_import = sub.add_parser("import-explanations", help="store a file of explanations as a partition")
    p_import.add_argument("layer")
    p_import.add_argument("latent_range")
    p_import.add_argument("file", help=".csv or .parquet with columns latent, explanation (local or s3://)")
    p_import.add_argument("--by", default=os.environ.get("USER", ""), help="who imports it (lineage)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo(args.layer, args.latent_range, args.through)
    if args.command == "import-explanations":
        return import_explanations(args.layer, args.latent_range, args.file, args.by)
    if args.command == "review":
        return review(args.layer, args.latent_range, args.latent, args.verdict, args.text, args.reviewer)
    from .config import load_config
    from .partitions import layer_partitions, register_partitions

    inst = instance()
    if args.command == "add-layer":
        cfg = load_config()
        unknown = [n for n in args.names if n not in cfg.hookpoints]
        if unknown:
            print(f"{unknown} have no sparse coder in the project config; add them under `hookpoints:` first",
                  file=sys.stderr)
            return 2
        register_partitions(inst, cfg, args.names)
    print("\n".join(inst.get_dynamic_partitions(layer_partitions.name)))
    return 0

