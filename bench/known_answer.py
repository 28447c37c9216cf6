"""Known-answer lift: true vs shuffled explanations of latents whose triggers are known, through
the project's own path (tests/support/known_answer.py): a JumpReLU coder configured as the
`embed_tokens` hookpoint of the shipped SmolLM2, firing exactly on chosen tokens; corpus ...
contexts materialised; the true explanations imported as the `explanations` partition and
`scores` materialised; then a shuffled assignment (a seeded derangement of the same texts)
imported and scored the same way.

    python bench/known_answer.py ROOT                              # every scorer, 16 latents
    python bench/known_answer.py ROOT --scorers embedding          # one scorer
    python bench/known_answer.py ROOT --scorers detection --scorer '{prompt_mode: single}'

Prints, per scorer and metric, the mean over latents of the true run, of the shuffled run, their
difference (the lift), the in-run chance baseline's mean (`<metric>_chance`, another latent's
explanation on the same windows), the number of latents and the mean windows per latent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support import known_answer as ka  # noqa: E402

from autointerp_assets.data.subject import load_subject  # noqa: E402
from autointerp_assets.scoring.registry import SCORERS  # noqa: E402


def report(true: pl.DataFrame, shuffled: pl.DataFrame, scorers: list[str]) -> None:
    print(f"{'column':34s} {'true':>6s} {'shuffled':>8s} {'lift':>6s} {'chance':>6s}  latents  windows")
    for s in scorers:
        for m in ("auroc", "balanced_accuracy", "r"):  # r: simulation's Pearson r
            c = f"{s}_{m}"
            if c not in true.columns or true[c].null_count() == true.height:
                continue
            t, u = true[c].mean(), shuffled[c].mean()
            print(f"{c:34s} {t:6.3f} {u:8.3f} {t - u:6.3f} {true[f'{c}_chance'].mean() or float('nan'):6.3f}"
                  f"  {true[c].drop_nulls().len():7d}  {true[f'{c}_n'].mean():7.1f}")
    statuses = dict(true.group_by("status").len().iter_rows())
    print(f"status {statuses}; failed answers {true['n_failed'].sum()}; mode {true['llm_scorer_mode'][0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="an empty or reusable directory")
    parser.add_argument("--scorers", nargs="+", default=list(SCORERS), choices=list(SCORERS))
    parser.add_argument("--latents", type=int, default=len(ka.TRIGGERS), help="the first N known-answer latents")
    parser.add_argument("--scorer", default="{}", help="YAML mapping of scorer settings")
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled assignment")
    args = parser.parse_args()

    started = time.perf_counter()
    subject = load_subject("smollm2-135m-instruct", None, "bfloat16", "cpu")
    pipeline = ka.Pipeline(args.root, subject, ka.TRIGGERS[: args.latents])
    pipeline.prepare()
    print(f"coder + corpus ... contexts: {time.perf_counter() - started:.0f} s", flush=True)
    settings = {"kinds": args.scorers, **yaml.safe_load(args.scorer)}
    runs = {}
    for name, texts in (("true", pipeline.true_texts()), ("shuffled", ka.shuffled(pipeline.true_texts(), args.seed))):
        started = time.perf_counter()
        pipeline.import_explanations(texts, name)
        runs[name] = pipeline.scores(**settings)
        print(f"scores ({name} explanations): {time.perf_counter() - started:.0f} s", flush=True)
    report(runs["true"], runs["shuffled"], args.scorers)


if __name__ == "__main__":
    main()
