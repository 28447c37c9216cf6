"""Inputs the bad-input suites spoil: a small sparsify SAE on disk, a truncated file, a dead URL."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

from autointerp_assets.coders import TopKSAE, save_topk_sae

D_MODEL = 576  # SmolLM2-135M


def sae_dir(tmp: Path, n: int = 64) -> Path:
    w = torch.randn(n, D_MODEL, generator=torch.Generator().manual_seed(0))
    return Path(save_topk_sae(TopKSAE(w, torch.zeros(n), w.clone(), torch.zeros(D_MODEL), 4), tmp / "sae"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"
