"""Known-answer measurement: true vs shuffled explanations of latents whose triggers are known,
through the project's own path (coder configured as a hookpoint, contexts materialised,
explanations written, scores materialised).

    python bench/known_answer.py prepare ROOT      # coder + corpus ... contexts under ROOT
    python bench/known_answer.py score ROOT [--kinds detection embedding] [--latents N]

`score` writes the true explanations as the `explanations` partition and materialises `scores`,
then a shuffled assignment (a seeded derangement of the same explanations) and scores again, and
prints the mean of each score column for both, with the number of latents and windows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support import known_answer as ka  # noqa: E402

from autointerp_assets.assets import ALL_ASSETS  # noqa: E402
from autointerp_assets.config import load_config  # noqa: E402
from autointerp_assets.partitions import partition_key, register_partitions  # noqa: E402
from autointerp_assets.store.store import ArtifactStore, partition_path  # noqa: E402
from resources import build_resources  # noqa: E402

RANGE = f"00000-{len(ka.TRIGGERS) - 1:05d}"


def _instance(root: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def _materialise(cfg, selection, key, instance):
    result = dg.materialize(ALL_ASSETS, selection=selection, partition_key=key, resources=build_resources(cfg),
                            instance=instance)
    return result


def prepare(root: Path, overrides: dict) -> None:
    from autointerp_assets.data.subject import load_subject

    root.mkdir(parents=True, exist_ok=True)
    subject = load_subject("smollm2-135m-instruct", None, "bfloat16", "cpu")
    coder = ka.write_coder(root / "coder", subject)
    raw = ka.project_raw(coder, root / "data")
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    (root / "project.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(root / "project.yaml")
    instance = _instance(root)
    register_partitions(instance, cfg)
    for asset, key in (("corpus", None), ("sparse_coder", ka.HOOKPOINT), ("activations", ka.HOOKPOINT),
                       ("latent_shards", partition_key(ka.HOOKPOINT, RANGE)), ("contexts", partition_key(ka.HOOKPOINT, RANGE))):
        started = time.perf_counter()
        _materialise(cfg, [asset], key, instance)
        print(f"{asset}: {time.perf_counter() - started:.0f} s", flush=True)


def shuffled(table: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """The same explanations, each moved to another latent (a seeded derangement)."""
    n = table.height
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if (perm != np.arange(n)).all():
            break
    return table.with_columns(pl.Series("explanation", table["explanation"].to_numpy()[perm]))


def score(root: Path, kinds: list[str] | None, n_latents: int | None, extra: dict) -> None:
    raw = yaml.safe_load((root / "project.yaml").read_text())
    if kinds:
        raw["scorer"]["kinds"] = kinds
    raw["scorer"] = {**raw["scorer"], **extra}
    cfg = load_config_from(raw, root)
    instance = _instance(root)
    register_partitions(instance, cfg)
    store = ArtifactStore(str(root / "data"))
    latents = range(0, n_latents or len(ka.TRIGGERS))
    truth = ka.true_explanations(range(0, len(ka.TRIGGERS))).filter(pl.col("latent").is_in(list(latents)))
    results = {}
    for name, table in (("true", truth), ("shuffled", shuffled(truth))):
        store.write_parquet(partition_path("explanations", ka.HOOKPOINT, RANGE), table)
        started = time.perf_counter()
        _materialise(cfg, ["scores"], partition_key(ka.HOOKPOINT, RANGE), instance)
        results[name] = store.read_parquet(partition_path("scores", ka.HOOKPOINT, RANGE))
        print(f"scores ({name}): {time.perf_counter() - started:.0f} s", flush=True)
    report(results["true"], results["shuffled"])


def load_config_from(raw: dict, root: Path):
    path = root / "scoring.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def report(true: pl.DataFrame, shuffled_: pl.DataFrame) -> None:
    columns = [c for c in true.columns if c.endswith(("_auroc", "_balanced_accuracy")) and true[c].null_count() < true.height]
    print(f"{'column':40s} {'true':>7s} {'shuffled':>8s} {'lift':>7s}  n_latents  mean windows")
    for c in columns:
        t, s = true[c].mean(), shuffled_[c].mean()
        n_col = f"{c}_n" if f"{c}_n" in true.columns else None
        windows = true[n_col].mean() if n_col else float("nan")
        print(f"{c:40s} {t:7.3f} {s:8.3f} {t - s:7.3f}  {true[c].drop_nulls().len():9d}  {windows:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["prepare", "score"])
    parser.add_argument("root", type=Path)
    parser.add_argument("--kinds", nargs="+")
    parser.add_argument("--latents", type=int)
    parser.add_argument("--sampling", default="{}", help="YAML mapping of sampling overrides (prepare)")
    parser.add_argument("--scorer", default="{}", help="YAML mapping of scorer overrides (score)")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.root, {"sampling": yaml.safe_load(args.sampling)})
    else:
        score(args.root, args.kinds, args.latents, yaml.safe_load(args.scorer))


if __name__ == "__main__":
    main()
