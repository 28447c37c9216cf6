"""The scorers, by the name used in `scorer.kinds`. Adding one is one module that implements
`base.Scorer` plus one line here; its columns, chance baseline and metrics follow."""

from __future__ import annotations

from .base import Scorer
from .detection import SCORER as DETECTION
from .embedding import SCORER as EMBEDDING
from .fuzzing import SCORER as FUZZING
from .simulation import SCORER as SIMULATION
from .surprisal import SCORER as SURPRISAL

SCORERS: dict[str, Scorer] = {"detection": DETECTION, "fuzzing": FUZZING, "embedding": EMBEDDING,
                              "surprisal": SURPRISAL, "simulation": SIMULATION}
