"""Storage: one artefact root, a local path or s3://bucket/prefix."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from autointerp_assets.store.store import DEFAULT_ORPHAN_AFTER_S, DEFAULT_RETENTION_S, ArtifactStore


class Storage(dg.ConfigurableResource):
    root: str = Field(description="Local directory or s3://bucket/prefix.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, R2, moto); None for AWS.")
    aws_access_key_id: str | None = Field(None, description="Pass dg.EnvVar('AWS_ACCESS_KEY_ID'); None = default chain.")
    aws_secret_access_key: str | None = Field(None, description="Pass dg.EnvVar('AWS_SECRET_ACCESS_KEY').")
    retention_s: float = Field(
        DEFAULT_RETENTION_S, ge=0,
        description="A replaced version (activations run, shard, contexts, corpus) stays readable this long, "
                    "for readers that started before the swap; it is deleted at a later commit.")
    orphan_after_s: float = Field(
        DEFAULT_ORPHAN_AFTER_S, ge=0,
        description="An uncommitted version (a crashed writer's files) is deleted once nothing was written "
                    "to it for this long; keep it above the longest pause of a live writer.")

    def storage_options(self) -> dict:
        if not self.root.startswith("s3://"):
            return {}
        options: dict = {}
        if self.endpoint_url:
            options["client_kwargs"] = {"endpoint_url": self.endpoint_url}
        if self.aws_access_key_id:
            options["key"] = self.aws_access_key_id
            options["secret"] = self.aws_secret_access_key
        return options

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root, self.storage_options(), self.retention_s, self.orphan_after_s)
