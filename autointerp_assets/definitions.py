"""The code location Dagster loads (`dagster dev`, workspace.yaml). Nothing imports it."""

import warnings

import dagster as dg

# The beta/preview APIs we rely on warn at every load; a user needs the run's own output.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from .code_location import build_definitions  # noqa: E402
from .config_file import load_config  # noqa: E402
from .preflight import check_at_load  # noqa: E402
from .user_errors import install_excepthook  # noqa: E402

install_excepthook()  # `dagster asset materialize` with bad input: one line, not a traceback
_cfg = load_config()
check_at_load(_cfg)  # local files and storage: a bad path fails here, before any run
defs = build_definitions(_cfg)
