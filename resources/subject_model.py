"""SubjectModel: the causal LM whose hidden states are explained."""

from __future__ import annotations

from functools import cache

import dagster as dg
from pydantic import Field

from autointerp_assets.data.subject import Subject, load_subject


@cache
def _load(model_id: str, revision: str | None, dtype: str, device: str) -> Subject:
    # One copy per process, shared by every asset of the run.
    return load_subject(model_id, revision, dtype, device)


class SubjectModel(dg.ConfigurableResource):
    """Any transformers causal LM: hub id, local directory, or .gguf file."""

    model_id: str = Field(description="Hub id, local dir, .gguf path, or 'smollm2-135m-instruct' (offline default).")
    revision: str | None = Field(None, description="Hub revision; ignored for local paths.")
    dtype: str = Field("bfloat16", description="bfloat16 | float16 | float32")
    device: str = Field("cpu", description="torch device")
    batch_size: int = Field(16, description="Sequences per forward pass.")

    def load(self) -> Subject:
        return _load(self.model_id, self.revision, self.dtype, self.device)
