"""Fuzzing: test windows with marked tokens; label = activating *and* the marks sit where the latent fires.

Half of the activating windows (seeded) get their true active tokens marked; the other
half get as many randomly chosen inactive tokens marked instead; non-activating windows
get random marks (as many as an activating window has on average).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..llm.api import Message
from .base import ClassificationScorer, Sample
from .prompts import build_fuzzing_messages


def _random_marks(rng: np.random.Generator, candidates: np.ndarray, n_tokens: int, k: int) -> tuple[bool, ...]:
    marks = np.zeros(n_tokens, dtype=bool)
    marks[rng.choice(candidates, size=min(k, candidates.size), replace=False)] = True
    return tuple(marks.tolist())


def samples(rows: list[dict], rng: np.random.Generator) -> list[Sample]:
    active = [np.asarray(r["acts"]) > 0 for r in rows]
    act_idx = [i for i, r in enumerate(rows) if r["activating"]]
    mean_marks = np.mean([active[i].sum() for i in act_idx]) if act_idx else 1.0
    k_negative = max(1, round(float(mean_marks)))
    wrong = set(rng.permutation(act_idx)[: len(act_idx) // 2].tolist())
    out = []
    for i, r in enumerate(rows):
        n_tok = len(r["token_strs"])
        if not r["activating"]:
            marks, label = _random_marks(rng, np.arange(n_tok), n_tok, k_negative), 0
        elif i in wrong and (~active[i]).any():
            marks, label = _random_marks(rng, np.flatnonzero(~active[i]), n_tok, int(active[i].sum())), 0
        else:  # correct marks (also when every token is active and no wrong marking exists)
            marks, label = tuple(active[i].tolist()), 1
        out.append(Sample(label, r["activating"], r["quantile"], tuple(r["token_strs"]), marks))
    return out


def messages(explanation: str, batch: Sequence[Sample]) -> tuple[Message, ...]:
    return build_fuzzing_messages(explanation, [(s.token_strs, s.marks) for s in batch])


SCORER = ClassificationScorer("fuzzing", samples, messages)
