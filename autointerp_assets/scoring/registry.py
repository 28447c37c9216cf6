"""The scorers, by the name used in `scorer.kinds`: adding one is one module plus one line here."""

from __future__ import annotations

from . import detection, embedding, fuzzing

SCORERS = {"detection": detection, "fuzzing": fuzzing, "embedding": embedding}
