"""Windows of real Python source with planted triggers: a window is "activating" for a trigger when
it holds the trigger token, with activation 1 there and 0 elsewhere. Used by the scorer cores' tests
on the real SmolLM2 (the pipeline's known-answer coder lives in the scoring tests of the scores work)."""

from __future__ import annotations

import ast
import functools
import inspect
import random
import unittest.case
from dataclasses import dataclass

# Python keywords as triggers, with the explanation a person would write.
TRIGGERS = {" lambda": 'the Python keyword "lambda"', " yield": 'the Python keyword "yield"',
            " assert": 'the Python keyword "assert"'}


@dataclass(frozen=True)
class PlantedWindow:
    ids: tuple[int, ...]
    token_strs: tuple[str, ...]
    acts: tuple[float, ...]
    activating: bool

    @property
    def text(self) -> str:
        return "".join(self.token_strs)


def planted_windows(tokenizer, length: int, per_class: int, seed: int = 0) -> dict[str, list[PlantedWindow]]:
    """trigger -> `per_class` windows holding it, then `per_class` holding no trigger at all."""
    source = "".join(inspect.getsource(m) for m in (ast, functools, unittest.case, random))
    ids = tokenizer(source, add_special_tokens=False)["input_ids"]
    windows = [ids[i : i + length] for i in range(0, len(ids) - length, length)]
    trigger_ids = {t: tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in TRIGGERS}
    silent = [w for w in windows if not set(w) & set(trigger_ids.values())]
    rng = random.Random(seed)
    out = {}
    for trigger, tid in trigger_ids.items():
        holding = [w for w in windows if tid in w]
        rng.shuffle(holding)
        negatives = list(silent)
        rng.shuffle(negatives)
        chosen = holding[:per_class] + negatives[:per_class]
        assert len(chosen) == 2 * per_class, f"too few windows for {trigger!r}"
        out[trigger] = [
            PlantedWindow(tuple(w), tuple(tokenizer.decode([t]) for t in w),
                          tuple(1.0 if t == tid else 0.0 for t in w), i < per_class)
            for i, w in enumerate(chosen)
        ]
    return out
