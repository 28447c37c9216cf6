"""The LLM side of the project config: the explainer, the scorers, steering and the endpoint."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .base import Strict

_ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


class ExplainerConfig(Strict):
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


class ScorerConfig(Strict):
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
        from ..scoring.registry import SCORERS  # lazily: scoring imports this module

        unknown = [k for k in kinds if k not in SCORERS]
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown}; choose from {sorted(SCORERS)}")
        return kinds


class InterventionConfig(Strict):
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


class LLMConfig(Strict):
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
