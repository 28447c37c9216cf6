"""The project config's schema: every section and field, documented, with the rules that
tie fields together; the data-side sections are in `data.py`, the LLM side in `llm.py`. Reading
it from YAML, with errors that name the field and the fix, is `config_file.py`."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .base import Strict
from .data import (
    CoderConfig,
    CorpusConfig,
    JumpReLUCoderConfig,
    NeuronsCoderConfig,
    ReLUCoderConfig,
    SamplingConfig,
    SubjectModelConfig,
    TopKCoderConfig,
    TrainTopKCoderConfig,
)
from .llm import ExplainerConfig, InterventionConfig, LLMConfig, ScorerConfig

__all__ = [
    "AutomationConfig", "ChecksConfig", "CoderConfig", "CorpusConfig", "ExplainerConfig", "InterventionConfig",
    "JumpReLUCoderConfig", "LLMConfig", "NeuronsCoderConfig", "ProjectConfig", "ReLUCoderConfig", "SamplingConfig",
    "ScorerConfig", "SubjectModelConfig", "TopKCoderConfig", "TrainTopKCoderConfig", "field_names",
]

# Dagster partition keys may not contain these characters.
_FORBIDDEN_KEY_CHARS = re.compile(r"[|,\[\]/]")


class ChecksConfig(Strict):
    """Thresholds of the asset checks."""

    max_dead_fraction: float = Field(
        0.9, ge=0, le=1, description="latent_shards warns when more of a range's latents never fire."
    )
    max_latent_density: float = Field(
        0.5, gt=0, le=1, description="latent_shards warns when a latent fires on more of the tokens (a broken coder)."
    )
    max_failure_rate: float = Field(
        0.5, ge=0, le=1,
        description="explanations/scores fail, and block what follows, above this share of failed latents or answers.",
    )
    review_min_lift: float = Field(
        0.1, description="scores flags a scored latent for human review when a scorer's lift over its chance "
        "baseline (AUROC, else balanced accuracy) is below this.",
    )
    review_max_disagreement: float = Field(
        0.3, gt=0, description="scores flags a latent for review when two scorers' lifts differ by more than this.",
    )


class AutomationConfig(Strict):
    """Declarative automation (autointerp_assets/automation.py): what runs by itself."""

    observe_cron: str = Field(
        "*/15 * * * *", description="When the model and coder sources are observed for new revisions (cron, UTC)."
    )
    explain_new_ranges: bool = Field(
        False, description="Also explain latent ranges nobody explained before (LLM cost for every configured "
        "latent). Off: automation keeps fresh only the ranges an operator explained once.",
    )

    @field_validator("observe_cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError(f"'{cron}' is not a 5-field cron string (minute hour day month weekday), e.g. '0 3 * * *'")
        return cron


class ProjectConfig(Strict):
    subject_model: SubjectModelConfig = SubjectModelConfig()
    hookpoints: dict[str, CoderConfig] = Field(
        default_factory=lambda: {"layers.6": TrainTopKCoderConfig()},
        description="Hookpoint -> sparse coder. Accepted hookpoints: 'layers.N' (residual after layer N), "
        "'layers.N.mlp' (MLP output; a transcoder there reads the MLP input; neurons its hidden units), "
        "'layers.N.self_attn' (attention output), 'embed_tokens' (see data/subject.py).",
    )
    latent_range_width: int = Field(64, gt=0, description="Latents per latent range partition.")
    corpus: CorpusConfig = CorpusConfig()
    sampling: SamplingConfig = SamplingConfig()
    explainer: ExplainerConfig = ExplainerConfig()
    scorer: ScorerConfig = ScorerConfig()
    intervention: InterventionConfig = InterventionConfig()
    llm: LLMConfig = LLMConfig()
    storage_root: str = Field("data", description="Local path (relative to the config's cwd) or s3://bucket/prefix.")
    activation_chunk_tokens: int = Field(16_384, gt=0, description="Tokens per activations chunk file.")
    checks: ChecksConfig = ChecksConfig()
    automation: AutomationConfig = AutomationConfig()

    @field_validator("hookpoints")
    @classmethod
    def _hookpoint_names(cls, hookpoints: dict[str, object]) -> dict[str, object]:
        if not hookpoints:
            raise ValueError("at least one hookpoint is needed, e.g. hookpoints: {layers.6: {kind: train_topk}}")
        for name in hookpoints:
            if _FORBIDDEN_KEY_CHARS.search(name):
                raise ValueError(f"hookpoint '{name}' contains one of | , [ ] / (not allowed in partition keys)")
        return hookpoints

    @field_validator("storage_root")
    @classmethod
    def _storage_root(cls, root: str) -> str:
        if not root.strip():
            raise ValueError("storage_root is empty; set a local directory (e.g. data) or s3://bucket/prefix")
        if root.startswith("s3://") and not root[len("s3://"):].strip("/"):
            raise ValueError(f"storage_root '{root}' names no bucket; write s3://bucket/prefix")
        return root

    @model_validator(mode="after")
    def _cross_field(self) -> ProjectConfig:
        """Rules between sections, so a bad combination fails at load, not stages later."""
        if self.sampling.example_ctx_len > self.corpus.ctx_len:
            raise ValueError(f"sampling.example_ctx_len={self.sampling.example_ctx_len} exceeds "
                             f"corpus.ctx_len={self.corpus.ctx_len}; lower sampling.example_ctx_len or raise corpus.ctx_len")
        trained = {name: c for name, c in self.hookpoints.items() if isinstance(c, TrainTopKCoderConfig)}
        sae_tokens = int(self.corpus.max_tokens * self.corpus.sae_train_fraction)
        for name, coder in trained.items():
            if sae_tokens < coder.batch_tokens:
                raise ValueError(
                    f"hookpoints.{name} trains an SAE on the corpus' SAE-training split, which holds at most "
                    f"{sae_tokens} tokens (corpus.max_tokens x corpus.sae_train_fraction) but batch_tokens is "
                    f"{coder.batch_tokens}; raise corpus.max_tokens or corpus.sae_train_fraction"
                )
        return self


def field_names() -> list[str]:
    """Every field name of every section: what a typo is matched against."""
    return sorted({name for model in Strict.__subclasses__() for name in model.model_fields})
