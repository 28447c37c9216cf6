"""Latents with known triggers: a synthetic sparse coder on SmolLM2's token embeddings.

The coder is a JumpReLU SAE in SAELens layout at the `embed_tokens` hookpoint. Latent i's
encoder column is a direction built from the embeddings of its trigger tokens, and its
threshold sits in the gap between the trigger tokens' pre-activations and every other
vocabulary token's, so the latent fires exactly on its triggers (checked over the whole
vocabulary when the coder is built). Its true explanation is therefore known.

`Pipeline` runs the project's own path on it: the coder configured as a hookpoint, corpus ...
contexts materialised, explanations imported from a file (the `import_from` run config of the
`explanations` asset), `scores` materialised. Used by the known-answer tests and by
`bench/known_answer.py` (the README's figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import safetensors.torch
import torch
import yaml

from autointerp_assets.assets import ALL_ASSETS
from autointerp_assets.config import ProjectConfig
from autointerp_assets.config_file import load_config
from autointerp_assets.partitions import partition_key, register_partitions
from autointerp_assets.store.store import ArtifactStore, partition_path
from resources import build_resources

HOOKPOINT = "embed_tokens"


@dataclass(frozen=True)
class Trigger:
    tokens: tuple[str, ...]  # single-token strings of the subject's vocabulary
    explanation: str  # the true explanation, as a person would write it


# Frequent in Python's stdlib sources and docs, so every latent has enough windows in a small corpus.
TRIGGERS: tuple[Trigger, ...] = (
    Trigger((" def",), 'the keyword "def" that starts a Python function definition'),
    Trigger((" return",), 'the Python keyword "return"'),
    Trigger((" self",), 'the word "self" in Python methods'),
    Trigger((" import",), 'the keyword "import"'),
    Trigger((" if",), 'the word "if" in conditional statements'),
    Trigger((" None",), 'the Python constant "None"'),
    Trigger((" the",), 'the English article "the"'),
    Trigger((" is",), 'the word "is"'),
    Trigger((" for",), 'the word "for", as in for loops'),
    Trigger((" =",), "the assignment operator = with a space before it"),
    Trigger(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"), "digits in numbers"),
    Trigger(("(", "["), "opening parentheses and brackets"),
    Trigger((")", "]"), "closing parentheses and brackets"),
    Trigger((" True", " False", "True", "False"), "the boolean constants True and False"),
    Trigger((" and", " or", " not"), "the logical operators and, or, not"),
    Trigger((":",), "the colon character"),
)


def token_ids(tokenizer, trigger: Trigger) -> list[int]:
    ids = []
    for text in trigger.tokens:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"trigger {text!r} is {len(encoded)} tokens; triggers must be single tokens")
        ids.append(encoded[0])
    return ids


def _separating_direction(emb: torch.Tensor, ids: list[int], rounds: int = 5, steps: int = 100) -> torch.Tensor:
    """w [d] with emb[ids] @ w >= 1 and every other row <= 0.5 where possible: squared hinge loss
    against the non-members that compete (the 1,024 highest), re-chosen each round, from the
    members' mean direction. Deterministic (full batch, fixed start)."""
    rows = emb[ids]
    w = (rows / rows.pow(2).sum(-1, keepdim=True)).mean(0)  # [d]
    others = torch.ones(emb.shape[0], dtype=torch.bool)
    others[ids] = False
    for _ in range(rounds):
        pre = emb @ w  # [V]
        if float(pre[ids].min()) - float(pre[others].max()) > 0.3:
            break
        rivals = emb[others][pre[others].topk(1024).indices]  # [1024, d]
        w = w.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=0.01)
        for _ in range(steps):
            loss = torch.relu(1 - rows @ w).pow(2).mean() + torch.relu(rivals @ w - 0.5).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        w = w.detach()
    return w


def coder_tensors(embeddings: torch.Tensor, members: list[list[int]]) -> dict[str, torch.Tensor]:
    """JumpReLU SAE tensors firing exactly on each latent's member tokens.

    embeddings [V, d] as the subject computes them (its dtype); members[i] = latent i's token ids.
    The threshold is the midpoint of the gap between the lowest member and the highest
    non-member pre-activation, computed in the subject's dtype; a latent without a clear gap is
    an error, so every latent fires on its members and nothing else.
    """
    emb = embeddings.float()  # [V, d]
    d = emb.shape[1]
    directions = []
    thresholds = []
    for ids in members:
        w = _separating_direction(emb, ids)
        pre = (embeddings @ w.to(embeddings.dtype)).float()  # [V] in the subject's precision
        inside = torch.zeros_like(pre, dtype=torch.bool)
        inside[ids] = True
        low, high = float(pre[inside].min()), float(pre[~inside].max())
        if low - high < 0.1 * abs(low):
            raise ValueError(f"tokens {ids} are not linearly separable from the vocabulary (gap {low - high:.3f})")
        directions.append(w)
        thresholds.append((low + high) / 2)
    w_enc = torch.stack(directions, dim=1)  # [d, n]
    return {
        "W_enc": w_enc.contiguous(),
        "b_enc": torch.zeros(len(members)),
        "W_dec": (w_enc / w_enc.norm(dim=0, keepdim=True)).T.contiguous(),  # [n, d]
        "b_dec": torch.zeros(d),
        "threshold": torch.tensor(thresholds),
    }


def write_coder(directory: Path, subject, triggers: tuple[Trigger, ...] = TRIGGERS) -> Path:
    """Write the SAE (sae_weights.safetensors + cfg.json) for `triggers` under `directory`."""
    embeddings = subject.model.get_input_embeddings().weight.detach()
    members = [token_ids(subject.tokenizer, t) for t in triggers]
    directory.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(coder_tensors(embeddings, members), str(directory / "sae_weights.safetensors"))
    (directory / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "hook_name": HOOKPOINT,
                                                    "d_in": int(embeddings.shape[1]), "d_sae": len(members)}))
    return directory


def project_raw(coder_dir: Path, storage_root: Path, n_latents: int = len(TRIGGERS)) -> dict:
    """The project config (as YAML-ready dict) of a known-answer run: the coder at `embed_tokens`,
    16k analysed stdlib tokens, one latent range."""
    return {
        "subject_model": {"id": "smollm2-135m-instruct", "dtype": "bfloat16", "batch_size": 16},
        "hookpoints": {HOOKPOINT: {"kind": "jumprelu", "path": str(coder_dir), "n_latents": n_latents}},
        "latent_range_width": n_latents,
        "corpus": {"source": "stdlib", "ctx_len": 64, "max_tokens": 16384, "sae_train_fraction": 0.0},
        "sampling": {"example_ctx_len": 32, "n_top": 6, "n_quantiles": 3, "n_per_quantile_explain": 1,
                     "n_per_quantile_test": 3, "n_random_negatives": 9, "n_hard_negatives": 0, "min_examples": 8},
        "explainer": {"kind": "top_tokens"},
        "scorer": {"kinds": ["detection", "fuzzing", "embedding"]},
        "llm": {"backend": "local"},
        "storage_root": str(storage_root),
    }


def explanation_file(path: Path, texts: list[str], latents: range) -> Path:
    """A CSV of (latent, explanation), as a person would bring it to `import-explanations`."""
    pl.DataFrame({"latent": list(latents), "explanation": texts}).write_csv(path)
    return path


def shuffled(texts: list[str], seed: int = 0) -> list[str]:
    """The same explanations, each moved to another latent (a seeded derangement)."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(len(texts))
        if (perm != np.arange(len(texts))).all():
            return [texts[i] for i in perm]


class Pipeline:
    """One known-answer project under `root`: coder, config, an instance, and the assets run the
    way an operator runs them (dg.materialize of the project's own assets and resources)."""

    def __init__(self, root: Path, subject, triggers: tuple[Trigger, ...] = TRIGGERS,
                 overrides: dict | None = None):
        self.root, self.triggers = root, triggers
        coder = write_coder(root / "coder", subject, triggers)
        raw = project_raw(coder, root / "data", len(triggers))
        for section, values in (overrides or {}).items():
            raw[section] = {**raw.get(section, {}), **values}
        self.raw = raw
        self.latents = range(0, len(triggers))
        self.range = f"00000-{len(triggers) - 1:05d}"
        self.key = partition_key(HOOKPOINT, self.range)
        self.instance = dg.DagsterInstance.ephemeral()
        register_partitions(self.instance, self.config())

    def config(self, scorer: dict | None = None, llm: dict | None = None) -> ProjectConfig:
        raw = {**self.raw, "scorer": {**self.raw["scorer"], **(scorer or {})}, "llm": llm or self.raw["llm"]}
        path = self.root / "project.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_config(path)

    def materialise(self, asset: str, cfg: ProjectConfig | None = None, run_config: dict | None = None):
        key = None if asset == "corpus" else HOOKPOINT if asset in ("sparse_coder", "activations") else self.key
        return dg.materialize(ALL_ASSETS, selection=[asset], partition_key=key, run_config=run_config,
                              resources=build_resources(cfg or self.config()), instance=self.instance)

    def prepare(self) -> None:
        """corpus ... contexts."""
        for asset in ("corpus", "sparse_coder", "activations", "latent_shards", "contexts"):
            self.materialise(asset)

    def import_explanations(self, texts: list[str], name: str) -> None:
        """`texts` (one per latent) stored as the explanations partition through the import path."""
        source = explanation_file(self.root / f"{name}.csv", texts, self.latents)
        self.materialise("explanations", run_config={"ops": {"explanations": {"config": {
            "import_from": str(source), "imported_by": "known-answer"}}}})

    def scores(self, llm: dict | None = None, **scorer) -> pl.DataFrame:
        """Materialise `scores` with these scorer (and llm) settings; the stored table."""
        self.materialise("scores", self.config(scorer, llm))
        return ArtifactStore(self.raw["storage_root"]).read_parquet(partition_path("scores", HOOKPOINT, self.range))

    def true_texts(self) -> list[str]:
        return [t.explanation for t in self.triggers]
