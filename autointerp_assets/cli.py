"""The command line: `python -m autointerp_assets <command>`.

    demo [--through ASSET] [--layer L] [--range R]   materialise one partition end to end
    layers                                           list the layer partitions
    add-layer NAME [NAME ...]                        register layer partitions (hookpoints)
    review LAYER RANGE LATENT accept|reject|edit [--text T] [--reviewer NAME]
                                                     record a human verdict on an explanation

Runs use the persistent Dagster instance in $DAGSTER_HOME (default ./dagster_home),
so `dagster dev` shows them afterwards with their lineage. Bad input (a config field, file,
partition key, credential or endpoint) is reported as one line naming the fix, exit status 2,
before anything is registered or written.
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


# Dagster's own console log repeats every failure with its stack; the CLI prints the one line.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def failure_line(result) -> str:
    """What failed and why, from a failed run: a user error's message alone, or a bug's message."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.event_specific_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            error = data.error.cause or data.error if data.error else None
            return (f"{error.cls_name}: {error.message.strip()} (a bug, not your input: the traceback is in the run "
                    "log, `dagster dev`)" if error else "see the run log in the Dagster UI (dagster dev)")
    return "see the run log in the Dagster UI (dagster dev)"


def demo(layer: str | None, latent_range: str | None, through: str) -> int:
    import dagster as dg

    from resources import build_resources

    from .assets import ALL_ASSETS
    from .config import load_config
    from .partition_keys import check_layer, check_layer_and_range
    from .partitions import layer_ranges, partition_key, register_partitions
    from .preflight import check_project

    cfg = load_config()
    # Every input is checked before the instance is touched: a bad key registers nothing, runs nothing.
    if latent_range:
        layer, latent_range = check_layer_and_range(cfg, layer or next(iter(cfg.hookpoints)), latent_range)
    else:
        layer = check_layer(cfg, layer) if layer else next(iter(cfg.hookpoints))
        latent_range = layer_ranges(cfg, layer)[0]
    resources = build_resources(cfg)
    check_project(cfg, [layer], with_llm=STAGES.index(through) >= STAGES.index("explanations"),
                  storage_options=resources["storage"].storage_options())
    inst = instance()
    register_partitions(inst, cfg, [layer])
    multi = partition_key(layer, latent_range)
    keys = {"corpus": None, "sparse_coder": layer, "activations": layer, "report": layer}
    for stage in STAGES[: STAGES.index(through) + 1]:
        print(f"== {stage} [{keys.get(stage, multi) or 'unpartitioned'}]", flush=True)
        result = dg.materialize(ALL_ASSETS, selection=[stage], partition_key=keys.get(stage, multi),
                                resources=resources, instance=inst, raise_on_error=False, run_config=QUIET)
        if not result.success:
            print(f"autointerp: {stage} failed: {failure_line(result)}", file=sys.stderr)
            return 1
    print(f"done: artefacts under {cfg.storage_root}/, runs in $DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    return 0


def review(layer: str, latent_range: str, latent: int, verdict: str, text: str | None, reviewer: str) -> int:
    """Append the verdict to reviews/<layer>/<range>.parquet and record it on the explanations
    partition as an observation, so the UI shows who reviewed what, when."""
    import dagster as dg

    from resources import build_resources

    from .config import load_config
    from .partition_keys import check_layer_and_range
    from .partitions import parse_latent_range, partition_key
    from .report.review import ReviewError, add_review
    from .store import layout
    from .store.store import partition_path

    cfg = load_config()
    check_layer_and_range(cfg, layer, latent_range)
    if latent not in parse_latent_range(latent_range):
        print(f"autointerp: latent {latent} is not in range {latent_range}; pick a latent of that range", file=sys.stderr)
        return 2
    store = build_resources(cfg)["storage"].store()
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
    args = parser.parse_args(argv)

    if args.command == "demo":
        return demo(args.layer, args.latent_range, args.through)
    if args.command == "review":
        return review(args.layer, args.latent_range, args.latent, args.verdict, args.text, args.reviewer)
    from .config import load_config
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

