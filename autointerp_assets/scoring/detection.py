"""Detection: is the latent active anywhere in this plain window? label = the window is activating."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Window
from .classify import LLMClassifier, Sample


def samples(windows: Sequence[Window], rng: np.random.Generator, highlight_fraction: float) -> list[Sample]:
    return [Sample(int(w.activating), w, None) for w in windows]


SCORER = LLMClassifier("detection", samples)
