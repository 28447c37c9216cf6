"""Storage: one artefact root, a local path or s3://bucket/prefix."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from autointerp_assets.store.store import ArtifactStore


class Storage(dg.ConfigurableResource):
    root: str = Field(description="Local directory or s3://bucket/prefix.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, R2, moto); None for AWS.")
    aws_access_key_id: str | None = Field(None, description="Pass dg.EnvVar('AWS_ACCESS_KEY_ID'); None = default chain.")
    aws_secret_access_key: str | None = Field(None, description="Pass dg.EnvVar('AWS_SECRET_ACCESS_KEY').")

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
        return ArtifactStore(self.root, self.storage_options())
