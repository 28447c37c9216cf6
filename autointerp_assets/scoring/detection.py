"""Detection: plain test windows; label = the window is activating."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..llm.api import Message
from .base import ClassificationScorer, Sample
from .prompts import build_detection_messages


def samples(rows: list[dict], rng: np.random.Generator) -> list[Sample]:
    return [Sample(int(r["activating"]), r["activating"], r["quantile"], tuple(r["token_strs"]), None) for r in rows]


def messages(explanation: str, batch: Sequence[Sample]) -> tuple[Message, ...]:
    return build_detection_messages(explanation, [s.token_strs for s in batch])


SCORER = ClassificationScorer("detection", samples, messages)
