"""The report's pictures, as PNG bytes (matplotlib, no display): each score's distribution
beside its chance baseline, and each score against firing frequency.

Chance is 0.5 for balanced accuracy and AUROC (a dashed line). Where the scorers also scored
a shuffled explanation (`<metric>_chance` columns), that distribution is drawn too, so the
gap between the two is the lift.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

CHANCE = 0.5
LABELS = {"detection_balanced_accuracy": "detection, balanced accuracy", "detection_auroc": "detection, AUROC",
          "fuzzing_balanced_accuracy": "fuzzing, balanced accuracy", "fuzzing_auroc": "fuzzing, AUROC",
          "embedding_auroc": "embedding retrieval, AUROC"}
_BINS = np.linspace(0.0, 1.0, 21)


def _values(table: pl.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        return np.array([])
    values = table[column].cast(pl.Float64).drop_nulls().drop_nans()
    return values.to_numpy()


def plotted_scores(table: pl.DataFrame, scores: tuple[str, ...]) -> list[str]:
    return [s for s in scores if _values(table, s).size]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def score_distributions(table: pl.DataFrame, scores: tuple[str, ...]) -> bytes | None:
    """One histogram per score: explained latents, and shuffled explanations where scored."""
    shown = plotted_scores(table, scores)
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 2.8), squeeze=False, sharey=True)
    for ax, score in zip(axes[0], shown, strict=True):
        values = _values(table, score)
        ax.hist(values, bins=_BINS, color="#4c72b0", alpha=0.85, label=f"explanation (mean {values.mean():.2f})")
        chance = _values(table, f"{score}_chance")
        if chance.size:
            ax.hist(chance, bins=_BINS, histtype="step", color="#555555", linewidth=1.5,
                    label=f"shuffled (mean {chance.mean():.2f})")
        ax.axvline(CHANCE, color="#c44e52", linestyle="--", linewidth=1, label="chance 0.5")
        ax.set_title(f"{LABELS.get(score, score)} (n={values.size})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("latents")
    return _png(fig)


def score_vs_frequency(table: pl.DataFrame, scores: tuple[str, ...]) -> bytes | None:
    """Each score against the latent's firing density (log scale): do rare latents explain worse?"""
    shown = [s for s in plotted_scores(table, scores) if "density" in table.columns]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for score, marker in zip(shown, "os^Dv", strict=False):
        rows = table.select("density", score).drop_nulls().filter((pl.col("density") > 0) & pl.col(score).is_not_nan())
        ax.scatter(rows["density"].to_numpy(), rows[score].to_numpy(), s=14, alpha=0.7, marker=marker,
                   label=LABELS.get(score, score))
    ax.axhline(CHANCE, color="#c44e52", linestyle="--", linewidth=1, label="chance 0.5")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("firing density (fraction of tokens)")
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown the Dagster UI renders as an image (a data URI: nothing to host)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
