"""What an LLM classification scorer is: test windows in, labelled samples and prompts out.

A scorer module (`detection`, `fuzzing`) turns a latent's held-out test rows into
`Sample`s with a 0/1 label, and renders a batch of samples with the explanation into chat
messages whose answer is one 0/1 per sample. `classify.score_latents` does the rest
(batching, the LLM, parsing, metrics) the same way for every scorer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..llm.api import Message


@dataclass(frozen=True)
class Sample:
    label: int
    activating: bool
    quantile: int  # -1 for non-activating
    token_strs: tuple[str, ...]
    marks: tuple[bool, ...] | None  # fuzzing highlights; None for detection


@dataclass(frozen=True)
class ClassificationScorer:
    name: str
    samples: Callable[[list[dict], np.random.Generator], list[Sample]]  # test rows -> labelled samples
    messages: Callable[[str, Sequence[Sample]], tuple[Message, ...]]  # explanation, batch -> prompt
