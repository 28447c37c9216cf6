"""Benchmarks of the `activations` stage, each measured side by side in one run.

    python bench/bench_activations.py throughput [--tokens 32768] [--layer layers.6]
        tok/s of the activations stage (forward + TopK encode + parquet chunks written
        to a store) divided by a bare forward pass to the same hookpoint, same batch,
        dtype and device. Rounds alternate which side runs first, so drift hits both
        sides equally; medians are compared.
    python bench/bench_activations.py profile [--tokens 16384] [--layer layers.6]
        where the stage's time goes, each part timed alone over the same batches: forward to
        the hookpoint, encode (matmul + top-k), host-side row building, and the bucketed parquet
        write; each as a share of the forward pass (the writer thread overlaps all but the forward).
    python bench/bench_activations.py versus REV [--tokens 16384] [--rounds 4]
        the activations stage of this tree against git revision REV (the previous
        version): each round runs `throughput --json` once in each tree, as separate
        processes, alternating which goes first; prints this/previous.
    python bench/bench_activations.py memory [--small 50000 --large 200000]
        peak RSS of a process that materialises only the `activations` asset (Dagster,
        real corpus, real SmolLM2) at two corpus sizes; prints large/small.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp_assets.coders import TopKSAE, save_topk_sae  # noqa: E402
from autointerp_assets.config import CorpusConfig  # noqa: E402
from autointerp_assets.data.activations import FIRST_POS, _Buffer, _encode, stream_activations  # noqa: E402
from autointerp_assets.data.corpus import build_corpus, documents  # noqa: E402
from autointerp_assets.data.subject import Subject, forward_captures, load_subject  # noqa: E402
from autointerp_assets.store.activations import ActivationRunWriter  # noqa: E402
from autointerp_assets.store.store import ArtifactStore  # noqa: E402


def random_sae(d_in: int, n_latents: int = 2048, k: int = 32) -> TopKSAE:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n_latents, d_in, generator=g) / d_in**0.5
    return TopKSAE(w, torch.zeros(n_latents), w.clone(), torch.zeros(d_in), k)


def random_weight_subject(config_dir: str, dtype: str, device: str) -> Subject:
    """SmolLM2's architecture with random weights: same FLOPs, no checkpoint to ship."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=torch_dtype)
    return Subject(model.to(device).eval(), None, f"random:{config_dir}", "random", torch.device(device), torch_dtype)


def throughput(args: argparse.Namespace) -> None:
    subject, tokens = load_tokens(args)
    seq_ids = np.arange(len(tokens))
    capture = subject.resolve(args.layer)
    coders = {args.layer: (capture, random_sae(subject.d_model).to(subject.device, subject.dtype))}
    store = ArtifactStore(tempfile.mkdtemp(prefix="bench-acts-"))

    def bare() -> float:
        start = time.perf_counter()
        for lo in range(0, len(tokens), args.batch_size):
            forward_captures(subject, torch.from_numpy(tokens[lo : lo + args.batch_size].astype(np.int64)), [capture])
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        writer = ActivationRunWriter(store, args.layer, coders[args.layer][1].n_latents, args.bucket_width)
        stream_activations(subject, tokens, seq_ids, coders, args.batch_size, args.chunk_tokens,
                           lambda hp, i, rows: writer.write_chunk(i, rows))
        writer.commit({})
        return time.perf_counter() - start

    bare(), ours()  # warm-up: allocator, thread pools, page cache
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for r in range(args.rounds):  # alternate which side goes first, so order effects cancel
        for side in (("bare", "ours") if r % 2 == 0 else ("ours", "bare")):
            times[side].append(bare() if side == "bare" else ours())
    n = tokens.size
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"device {torch.cuda.get_device_name() if subject.device.type == 'cuda' else 'cpu'}: tokens per pass {n}, batch {args.batch_size}, dtype {args.dtype}, device {args.device}, "
          f"hookpoint {args.layer}, torch threads {torch.get_num_threads()}, rounds {args.rounds}")
    print(f"bare forward to hookpoint : {n / med['bare']:8.0f} tok/s  (median of {times['bare']})")
    print(f"activations stage          : {n / med['ours']:8.0f} tok/s  (median of {times['ours']})")
    print(f"ratio ours/bare            : {med['bare'] / med['ours']:.3f}")
    if args.json:
        print(json.dumps({"ours_tok_s": n / med["ours"], "bare_tok_s": n / med["bare"]}))


def load_tokens(args: argparse.Namespace) -> tuple[Subject, np.ndarray]:
    if args.random_weights:
        subject = random_weight_subject(args.random_weights, args.dtype, args.device)
        tokens = np.random.default_rng(0).integers(0, subject.model.config.vocab_size, (args.tokens // 64, 64),
                                                   dtype=np.int32)
        return subject, tokens
    subject = load_subject("smollm2-135m-instruct", None, args.dtype, args.device)
    cfg = CorpusConfig(max_tokens=args.tokens, ctx_len=64, sae_train_fraction=0)
    return subject, build_corpus(documents(cfg), subject.tokenizer, cfg).token_array()  # [n_seq, 64]


def profile(args: argparse.Namespace) -> None:
    subject, tokens = load_tokens(args)
    capture = subject.resolve(args.layer)
    sae = random_sae(subject.d_model, args.latents).to(subject.device, subject.dtype)
    store = ArtifactStore(tempfile.mkdtemp(prefix="bench-prof-"))
    seq_ids = np.arange(len(tokens))
    parts: dict[str, float] = {"forward": 0.0, "encode": 0.0, "rows": 0.0, "write": 0.0}
    for _ in range(2):  # the first round warms up; the second is reported
        parts = dict.fromkeys(parts, 0.0)
        writer = ActivationRunWriter(store, args.layer, sae.n_latents, args.bucket_width)
        buf, chunk = _Buffer(), 0
        for lo in range(0, len(tokens), args.batch_size):
            t0 = time.perf_counter()
            h = forward_captures(subject, torch.from_numpy(tokens[lo : lo + args.batch_size].astype(np.int64)),
                                 [capture])[args.layer][:, FIRST_POS:]
            t1 = time.perf_counter()
            values, indices, _ = _encode(sae, h.reshape(-1, h.shape[-1]))
            values, indices = values.float().cpu().numpy(), indices.int().cpu().numpy()
            t2 = time.perf_counter()
            buf.add(seq_ids[lo : lo + args.batch_size], h.shape[1], values, indices)
            t3 = time.perf_counter()
            if buf.tokens >= args.chunk_tokens or lo + args.batch_size >= len(tokens):
                writer.write_chunk(chunk, buf.frame())
                buf, chunk = _Buffer(), chunk + 1
            t4 = time.perf_counter()
            for name, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[name] += dt
    print(f"tokens {tokens.size}, batch {args.batch_size}, {args.layer}, {sae.n_latents} latents, "
          f"torch threads {torch.get_num_threads()}")
    for name, seconds in parts.items():
        print(f"{name:8s} {seconds:7.2f} s  {seconds / parts['forward']:6.1%} of the forward pass")


def versus(args: argparse.Namespace) -> None:
    previous = Path(tempfile.mkdtemp(prefix="bench-prev-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(previous)], input=archive, check=True)

    def one(tree: Path) -> dict[str, float]:
        out = subprocess.run([sys.executable, str(tree / "bench" / "bench_activations.py"), "throughput", "--json",
                              "--tokens", str(args.tokens), "--rounds", "1"],
                             cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                             capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    runs: dict[str, list[dict[str, float]]] = {"this": [], "previous": []}
    for r in range(args.rounds):
        for side in (("this", "previous") if r % 2 == 0 else ("previous", "this")):
            runs[side].append(one(ROOT if side == "this" else previous))
    med = {side: float(np.median([x["ours_tok_s"] for x in xs])) for side, xs in runs.items()}
    print(f"activations stage, this tree : {med['this']:8.0f} tok/s")
    print(f"activations stage, {args.rev:<10}: {med['previous']:8.0f} tok/s")
    print(f"ratio this/previous          : {med['this'] / med['previous']:.3f}")


MEMORY_RUN = """
import json, sys, dagster as dg
from autointerp_assets.assets import ALL_ASSETS
from autointerp_assets.config_file import load_config
from resources import build_resources
inst = dg.DagsterInstance.ephemeral(); inst.add_dynamic_partitions("layer", ["layers.6"])
res = build_resources(load_config())
for sel, key in (%s):
    dg.materialize(ALL_ASSETS, selection=[sel], partition_key=key, resources=res, instance=inst)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so this child would report its parent's peak
print(json.dumps({"max_rss_mb": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024}))
"""


def memory(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    subject = load_subject("smollm2-135m-instruct", None, "bfloat16", "cpu")
    save_topk_sae(random_sae(subject.d_model), work / "sae")
    results = {}
    for label, n_tokens in (("small", args.small), ("large", args.large)):
        config = work / f"{label}.yaml"
        config.write_text(json.dumps({
            "hookpoints": {"layers.6": {"kind": "topk", "path": str(work / "sae"), "n_latents": 2048}},
            "corpus": {"max_tokens": n_tokens, "ctx_len": 64, "sae_train_fraction": 0.0, "max_windows_per_doc": 64},
            "storage_root": str(work / label),
        }))
        env = {**os.environ, "AUTOINTERP_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
        prepare = '("corpus", None), ("sparse_coder", "layers.6")'
        subprocess.run([sys.executable, "-c", MEMORY_RUN % prepare], env=env, check=True, capture_output=True)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", MEMORY_RUN % '("activations", "layers.6"),'], env=env,
                             check=True, capture_output=True, text=True)
        rss = json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"]
        tokens = json.loads((work / label / "activations/layers.6/manifest.json").read_text())["n_tokens"]
        results[label] = rss
        print(f"{label}: {tokens} tokens analysed, peak RSS {rss:.0f} MiB, {time.perf_counter() - start:.0f} s")
    print(f"peak RSS ratio large/small: {results['large'] / results['small']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--tokens", type=int, default=32_768)
    t.add_argument("--layer", default="layers.6")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--dtype", default="bfloat16")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--random-weights", metavar="CONFIG_DIR", help="SmolLM2's config.json with random weights")
    t.add_argument("--chunk-tokens", type=int, default=16_384, help="the config's activation_chunk_tokens")
    t.add_argument("--bucket-width", type=int, default=64, help="the config's latent_range_width")
    t.add_argument("--json", action="store_true", help="also print the medians as one JSON line")
    p = sub.add_parser("profile")
    p.add_argument("--tokens", type=int, default=16_384)
    p.add_argument("--layer", default="layers.6")
    p.add_argument("--latents", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--random-weights", metavar="CONFIG_DIR")
    p.add_argument("--chunk-tokens", type=int, default=16_384)
    p.add_argument("--bucket-width", type=int, default=64)
    v = sub.add_parser("versus")
    v.add_argument("rev")
    v.add_argument("--tokens", type=int, default=16_384)
    v.add_argument("--rounds", type=int, default=4)
    m = sub.add_parser("memory")
    m.add_argument("--small", type=int, default=50_000)
    m.add_argument("--large", type=int, default=200_000)
    args = parser.parse_args()
    {"throughput": throughput, "profile": profile, "versus": versus, "memory": memory}[args.mode](args)


if __name__ == "__main__":
    main()
