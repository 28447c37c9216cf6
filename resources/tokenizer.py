"""Tokenizer: the subject model's tokenizer alone, for steps that need no weights (corpus, contexts).

Those steps then run on CPU nodes with no GPU and never load the model, whatever
`subject_model.device` says (on k8s only GPU steps get a GPU)."""

from __future__ import annotations

from functools import cache

import dagster as dg
from pydantic import Field

from autointerp_assets.data.model_files import revision_source
from autointerp_assets.data.revisions import revision_of
from autointerp_assets.data.subject import load_tokenizer


@cache
def _load(model_id: str, revision: str | None):
    return load_tokenizer(model_id, revision)


@cache
def _revision(model_id: str, revision: str | None) -> str:
    return revision_of(revision_source(model_id), hub_revision_hint=revision)


class Tokenizer(dg.ConfigurableResource):
    """The subject model's tokenizer; same model id and revision as `SubjectModel`."""

    model_id: str = Field(description="Hub id, local dir, .gguf path, or 'smollm2-135m-instruct' (offline default).")
    revision: str | None = Field(None, description="Hub revision; ignored for local paths.")

    def load(self):
        return _load(self.model_id, self.revision)

    def lineage(self) -> dict[str, str]:
        """model_id and model_revision, as `lineage.subject_lineage` gives them for a loaded model."""
        return {"model_id": self.model_id, "model_revision": _revision(self.model_id, self.revision)}
