"""The command line: `python -m autointerp_assets <command>`. Partition keys read LAYER|RANGE,
as the UI shows them (quote them in a shell): 'layers.6|00000-00031'.

    demo [--partition KEY] [--through ASSET] [--max-latents N]
                                                 one partition end to end, then a summary
    layers                                       list the layer partitions
    add-layer NAME [NAME ...]                    register layer partitions (hookpoints)
    explain KEY [--latents 3,17] [--max-latents N] [--all]
                                                 explain (with a latent selection, kept for later
                                                 automated runs) and score one partition
    review KEY LATENT accept|reject|edit [--text T] [--reviewer NAME]
                                                 record a verdict on an explanation
    import-explanations KEY FILE [--by NAME]     store a .csv/.parquet of (latent, explanation) as
                                                 that explanations partition (then score it)
    backfill LAYER [LAYER ...] [--assets A,B]    a Dagster backfill of exactly the layers' coder ranges

Runs use the persistent Dagster instance in $DAGSTER_HOME (default ./dagster_home), so
`dagster dev` shows them afterwards with their lineage. Bad input (a config field, file,
partition key, credential or endpoint) is reported as one line naming the fix, exit status 2,
before anything is registered or written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DATA_HALF = ("sparse_coder", "activations", "latent_shards", "contexts")


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


def _key(text: str) -> tuple[str, str]:
    """(layer, range) of a key typed as LAYER|RANGE (or URL-encoded), checked against the config."""
    from .config_file import load_config
    from .errors import PartitionKeyError
    from .partition_keys import check_partition_key
    from .partitions import layer_ranges

    cfg = load_config()
    text = text.strip().replace("%7C", "|").replace("%7c", "|")
    layer, latent_range = check_partition_key(cfg, text)
    if latent_range is None:
        raise PartitionKeyError(f"'{text}' names a layer only; this command takes LAYER|RANGE, e.g. "
                                f"'{layer}|{layer_ranges(cfg, layer)[0]}'")
    return layer, latent_range


def demo(partition: str | None, through: str, max_latents: int) -> int:
    from resources import build_resources

    from .config_file import load_config
    from .demo import STAGES, run_demo
    from .partitions import layer_ranges, register_partitions
    from .preflight import check_project

    cfg = load_config()
    # Every input is checked before the instance is touched: a bad key registers nothing, runs nothing.
    if partition:
        layer, latent_range = _key(partition)
    else:
        layer = next(iter(cfg.hookpoints))
        latent_range = layer_ranges(cfg, layer)[0]
    check_project(cfg, [layer], with_llm=STAGES.index(through) >= STAGES.index("explanations"),
                  storage_options=build_resources(cfg)["storage"].storage_options())
    inst = instance()
    register_partitions(inst, cfg, [layer])
    return run_demo(cfg, inst, layer, latent_range, through, max_latents or None)


def _materialize(selection: list[str], layer: str, latent_range: str, run_config: dict | None = None):
    """One run of `selection` for the partition (registered first: the key was checked)."""
    import dagster as dg

    from resources import build_resources

    from .checks import build_asset_checks
    from .code_location import build_assets
    from .config_file import load_config
    from .demo import QUIET
    from .partitions import partition_key, register_partitions

    cfg = load_config()
    inst = instance()
    register_partitions(inst, cfg, [layer])
    return dg.materialize([*build_assets(cfg), *build_asset_checks(cfg.checks)], selection=selection,
                          partition_key=partition_key(layer, latent_range), resources=build_resources(cfg),
                          instance=inst, raise_on_error=False, run_config={**QUIET, **(run_config or {})})


def _failed(result) -> int:
    from .demo import failure_line

    print(f"run {result.run_id} failed: {failure_line(result)}", file=sys.stderr)
    return 1


def explain(partition: str, latents: list[int], max_latents: int | None, all_latents: bool) -> int:
    from resources import build_resources

    from .config_file import load_config
    from .report import summary

    layer, latent_range = _key(partition)
    selection = {"latents": latents, "max_latents": max_latents, "all_latents": all_latents}
    result = _materialize(["explanations", "scores"], layer, latent_range,
                          {"ops": {"explanations": {"config": selection}}})
    if not result.success:
        return _failed(result)
    store = build_resources(load_config())["storage"].store()
    print(summary.partition_table(store, layer, latent_range))
    print(summary.cost_line(store, layer, latent_range))
    return 0


def review(partition: str, latent: int, verdict: str, text: str | None, reviewer: str) -> int:
    """Checked here first, so a bad review gets one clear line and no run; then recorded by the
    `reviews` asset (the same path as the UI's review_job), so it is in the run history."""
    from resources import build_resources

    from .config_file import load_config
    from .report import review as reviews
    from .store import layout

    layer, latent_range = _key(partition)
    store = build_resources(load_config())["storage"].store()
    explained = layout.read_partition(store, "explanations", layer, latent_range)
    current = reviews.standing(explained, reviews.read_log(store, layer, latent_range))
    try:
        seen = reviews.new_review(current, latent, verdict, reviewer, text)
    except reviews.ReviewError as e:
        print(f"review not recorded: {e}", file=sys.stderr)
        return 2
    config = {"latent": latent, "verdict": verdict, "text": text or "", "reviewer": reviewer,
              "explanation_version": seen.explanation_version}
    result = _materialize(["reviews"], layer, latent_range, {"ops": {"reviews": {"config": config}}})
    if not result.success:
        return _failed(result)
    print(f"{verdict} of latent {latent} ({seen.explanation!r}, version {seen.explanation_version}) recorded by "
          f"{reviewer} under {store.uri(reviews.log_dir(layer, latent_range))}/")
    if verdict == "edit":
        print("the edited text is what scores read: automation re-scores the partition, or run "
              f"`python -m autointerp_assets explain '{layer}|{latent_range}'`")
    return 0


def import_explanations(partition: str, path: str, by: str) -> int:
    """Check the file whole, then materialise the explanations partition from it through Dagster
    (the run records the source, its hash and who imported it)."""
    from resources import build_resources

    from .config_file import load_config
    from .explain import imported
    from .partitions import parse_latent_range

    layer, latent_range = _key(partition)
    store = build_resources(load_config())["storage"].store()
    uri = path if "://" in path else str(Path(path).resolve())
    try:
        imported.explanations_table(imported.read_file(uri, store.storage_options), parse_latent_range(latent_range))
    except imported.ExplanationImportError as e:
        print(f"nothing imported: {e}", file=sys.stderr)
        return 2
    result = _materialize(["explanations"], layer, latent_range,
                          {"ops": {"explanations": {"config": {"import_from": uri, "imported_by": by}}}})
    if not result.success:
        return _failed(result)
    print(f"imported {uri} as explanations[{layer}|{latent_range}]; materialise scores for that partition next")
    return 0


def backfill(layers: list[str], assets: list[str]) -> int:
    from .backfill import submit_backfill
    from .config_file import load_config
    from .partition_keys import check_layer
    from .partitions import register_partitions

    cfg = load_config()
    for name in layers:
        check_layer(cfg, name)  # before the instance: an unknown name registers nothing
    inst = instance()
    register_partitions(inst, cfg, layers)
    backfill_id, n = submit_backfill(inst, cfg, layers, assets)
    print(f"backfill {backfill_id}: {', '.join(assets)} for {n} partitions of {', '.join(layers)} (only the ranges "
          "their coders have); the daemon runs it: `dagster dev` or `dagster-daemon run`, then Overview > Backfills")
    return 0


def _parser() -> argparse.ArgumentParser:
    from .demo import STAGES

    parser = argparse.ArgumentParser(prog="python -m autointerp_assets",
                                     description="Partition keys read LAYER|RANGE, e.g. 'layers.6|00000-00031'.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="materialise one partition end to end, then print a summary")
    p_demo.add_argument("--partition", metavar="KEY", help="LAYER|RANGE (default: the first range of the first layer)")
    p_demo.add_argument("--through", choices=STAGES, default="report")
    p_demo.add_argument("--max-latents", type=int, default=8,
                        help="explain the N most active latents of the range (default 8, keeps it short; 0: all)")
    sub.add_parser("layers", help="list layer partitions")
    p_add = sub.add_parser("add-layer", help="register layer partitions")
    p_add.add_argument("names", nargs="+")
    p_explain = sub.add_parser("explain", help="explain and score one partition, with a latent selection")
    p_explain.add_argument("partition", metavar="KEY")
    p_explain.add_argument("--latents", type=lambda s: [int(x) for x in s.split(",") if x], default=[])
    p_explain.add_argument("--max-latents", type=int)
    p_explain.add_argument("--all", dest="all_latents", action="store_true", help="every latent (and keep that)")
    p_review = sub.add_parser("review", help="accept, reject or edit an explanation")
    p_review.add_argument("partition", metavar="KEY")
    p_review.add_argument("latent", type=int)
    p_review.add_argument("verdict", choices=["accept", "reject", "edit"])
    p_review.add_argument("--text", help="the edited explanation (with 'edit')")
    p_review.add_argument("--reviewer", default=os.environ.get("USER", ""))
    p_import = sub.add_parser("import-explanations", help="store a file of explanations as a partition")
    p_import.add_argument("partition", metavar="KEY")
    p_import.add_argument("file", help=".csv or .parquet with columns latent, explanation (local or s3://)")
    p_import.add_argument("--by", default=os.environ.get("USER", ""), help="who imports it (lineage)")
    p_backfill = sub.add_parser("backfill", help="submit a Dagster backfill of the layers' coder ranges")
    p_backfill.add_argument("layers", nargs="+")
    p_backfill.add_argument("--assets", type=lambda s: [a for a in s.split(",") if a], default=list(DATA_HALF))
    return parser


def main(argv: list[str] | None = None) -> int:
    from .user_errors import message

    try:
        return _main(argv)
    except Exception as e:
        line = message(e)
        if line is None:
            raise  # a bug: its traceback is the useful output
        print(f"autointerp: {line}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    import warnings

    import dagster as dg

    # The beta/preview APIs we rely on (multi-partition mappings, partitioned checks) warn on
    # every import; operators need the run's own output, not that.
    for category in (dg.BetaWarning, dg.PreviewWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo(args.partition, args.through, args.max_latents)
    if args.command == "explain":
        return explain(args.partition, args.latents, args.max_latents, args.all_latents)
    if args.command == "import-explanations":
        return import_explanations(args.partition, args.file, args.by)
    if args.command == "review":
        return review(args.partition, args.latent, args.verdict, args.text, args.reviewer)
    if args.command == "backfill":
        return backfill(args.layers, args.assets)
    from .config_file import load_config
    from .partition_keys import check_layer
    from .partitions import layer_partitions, register_partitions

    if args.command == "add-layer":
        cfg = load_config()
        for name in args.names:
            check_layer(cfg, name)  # before the instance: an unknown name registers nothing
        register_partitions(instance(), cfg, args.names)
    inst = instance()
    print("\n".join(inst.get_dynamic_partitions(layer_partitions.name)))
    return 0
