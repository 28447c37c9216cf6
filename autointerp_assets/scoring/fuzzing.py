"""Fuzzing: windows with marked tokens; label = the marks sit where the latent fires.

As in Paulo et al. 2024: a token is marked when its activation is at least
`sampling.highlight_fraction` of the window's maximum (`llm.prompts.highlight_mask`, the
explainer's rule). Half of the activating windows (seeded) keep those true marks (label 1). The
other half get wrong marks that look like right ones: for every true span, a contiguous span of
the same length at positions where the latent is silent (label 0). Non-activating windows get
marks drawn the same way, with the span lengths of a randomly chosen activating window (label 0).
So neither the number nor the shape of the marks gives the answer away. An activating window
with no room for wrong spans keeps its true marks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..llm.prompts import highlight_mask
from .base import Window
from .classify import LLMClassifier, Sample


def spans(mask: Sequence[bool]) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of True."""
    out, i = [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            out.append((i, j - i))
            i = j
        else:
            i += 1
    return out


def place_spans(rng: np.random.Generator, silent: Sequence[bool], lengths: Sequence[int]) -> tuple[bool, ...] | None:
    """Marks of the given span lengths, each on silent positions only and not touching another
    span (so spans do not merge); None when they do not fit."""
    n = len(silent)
    free = list(silent)
    marks = [False] * n
    for length in sorted(lengths, reverse=True):  # longest first: the hardest to fit
        starts = [s for s in range(n - length + 1) if all(free[s : s + length])]
        if not starts:
            return None
        s = int(starts[rng.integers(len(starts))])
        for p in range(max(0, s - 1), min(n, s + length + 1)):
            free[p] = False
        marks[s : s + length] = [True] * length
    return tuple(marks)


def samples(windows: Sequence[Window], rng: np.random.Generator, highlight_fraction: float) -> list[Sample]:
    true_marks = [highlight_mask(w.acts, highlight_fraction) for w in windows]
    activating = [i for i, w in enumerate(windows) if w.activating]
    wrong = set(rng.permutation(activating)[: len(activating) // 2].tolist())
    span_lengths = [[length for _, length in spans(true_marks[i])] for i in activating] or [[1]]
    out = []
    for i, w in enumerate(windows):
        silent = [a <= 0 for a in w.acts]
        if not w.activating:
            lengths = span_lengths[int(rng.integers(len(span_lengths)))]
            marks = place_spans(rng, silent, lengths) or place_spans(rng, silent, [1])
            out.append(Sample(0, w, marks))
            continue
        if i in wrong:
            marks = place_spans(rng, silent, [length for _, length in spans(true_marks[i])])
            if marks is not None:
                out.append(Sample(0, w, marks))
                continue
        out.append(Sample(1, w, true_marks[i]))
    return out


SCORER = LLMClassifier("fuzzing", samples)
