"""What Dagster cannot do by itself: register layer partitions from the project config
(`hookpoints`), read a model's or coder's revision (`sources`, observed as data versions by
`observe`), and keep automation within the latent ranges each layer's coder has
(`coder_ranges`). Everything else is Dagster's Declarative Automation and backfills."""

from .coder_ranges import InProjectCoders
from .hookpoints import build_hookpoint_sensor
from .observe import build_source_assets

__all__ = ["InProjectCoders", "build_hookpoint_sensor", "build_source_assets"]
