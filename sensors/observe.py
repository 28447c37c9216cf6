"""The observable sources: the subject model and each layer's coder, with their revisions as
data versions. They are upstream of `sparse_coder` and `activations`, so a new revision shows
those partitions as unsynced in the UI, and automation re-runs them and what follows.

Dagster observes them on `automation.observe_cron` ("Observe" in the UI does it now); what a
revision is comes from `sensors/sources.py`.
"""

from __future__ import annotations

import dagster as dg

from autointerp_assets.config import ProjectConfig
from autointerp_assets.partitions import layer_partitions
from resources.storage import Storage

from .sources import coder_revisions, subject_revision

SUBJECT_SOURCE = dg.AssetKey("subject_model_source")
CODER_SOURCE = dg.AssetKey("sparse_coder_source")


def build_source_assets(cfg: ProjectConfig, observe: dg.AutomationCondition | None = None) -> list[dg.SourceAsset]:
    """`observe`: when Dagster observes them (automation.source_condition)."""
    @dg.observable_source_asset(
        key=SUBJECT_SOURCE, group_name="sources", automation_condition=observe,
        description="The subject model's revision: a content hash of its local/S3 files, or the hub commit sha.",
    )
    def subject_model_source() -> dg.DataVersion:
        return dg.DataVersion(subject_revision(cfg))

    @dg.observable_source_asset(
        key=CODER_SOURCE, group_name="sources", partitions_def=layer_partitions,
        automation_condition=observe,
        description="Each layer's coder: the files its loader reads (content hash or hub blob ids), or the "
                    "settings of a trained or neuron coder.",
    )
    def sparse_coder_source(context: dg.OpExecutionContext, storage: Storage) -> dg.DataVersionsByPartition:
        registered = set(context.instance.get_dynamic_partitions(layer_partitions.name))
        layers = [layer for layer in cfg.hookpoints if layer in registered]
        revisions, errors = coder_revisions(cfg, layers, storage.storage_options())
        for layer, error in errors.items():
            context.log.error(f"cannot read the revision of {layer}'s coder, left unobserved: {error}")
        if errors and not revisions:
            raise dg.Failure(f"no coder revision could be read: {errors}")
        return dg.DataVersionsByPartition(revisions)

    return [subject_model_source, sparse_coder_source]
