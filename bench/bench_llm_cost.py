"""LLM tokens per latent for explanation, detection and fuzzing, against the reference (delphi).

    python bench/bench_llm_cost.py [--reference /path/to/delphi] [--latents 8]

The amount of scored work is the reference's default: 50 activating and 50 non-activating test
windows of 32 tokens per latent, 5 per prompt; the explainer sees our default explanation set
(10 top + 2 from each of 5 quantiles) and the reference's sees its default 40 activating
windows. Windows are real text (the stdlib corpus through SmolLM2's tokenizer) with a synthetic
peak, so prompt lengths are realistic. Our prompts come from the real pipeline code
(`explain_latents`, `score_latents`) through a recording LLM; the reference's from its own prompt
modules, loaded from a checkout (--reference; without it only ours is printed), with each example
rendered the way it renders them. Every prompt is counted with SmolLM2's tokenizer and chat
template. Printed per latent: prompt tokens, the tokens a server with prefix caching still has
to compute (the part not shared with an earlier prompt of the same kind), and the completion
budget (max_tokens) and a typical answer's tokens.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp_assets.config import CorpusConfig, ExplainerConfig, SamplingConfig, ScorerConfig  # noqa: E402
from autointerp_assets.data.corpus import build_corpus, documents  # noqa: E402
from autointerp_assets.data.model_files import loadable  # noqa: E402
from autointerp_assets.data.sampling import CONTEXT_SCHEMA  # noqa: E402
from autointerp_assets.explain.explainer import explain_latents  # noqa: E402
from autointerp_assets.llm.api import ChatRequest, Completion, Usage  # noqa: E402
from autointerp_assets.scoring.scores import score_latents  # noqa: E402

N_TEST_ACTIVATING = N_TEST_NON_ACTIVATING = 50
PER_PROMPT = 5
WINDOW = 32
REFERENCE_EXPLAIN_EXAMPLES = 40
EXPLANATION = "The word \"self\" as the first parameter of a Python method definition"


class Recorder:
    """A ChatLLM that records every request and answers in the expected format."""

    model_name = "recorder"
    supports_logprobs = False

    def __init__(self) -> None:
        self.usage = Usage()
        self.requests: list[ChatRequest] = []

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        self.requests += requests
        return [Completion(text=f"Explanation: {EXPLANATION}") for _ in requests]


def windows(tokenizer, n: int, seed: int) -> list[list[str]]:
    """n real-text windows of WINDOW tokens, as token strings."""
    cfg = CorpusConfig(max_tokens=max(65_536, n * 64 * 2), ctx_len=64, sae_train_fraction=0)
    tokens = build_corpus(documents(cfg), tokenizer, cfg).token_array()
    rows = np.random.default_rng(seed).choice(len(tokens), size=n, replace=False)
    return [[tokenizer.decode([t]) for t in tokens[r, :WINDOW].tolist()] for r in rows]


def contexts_table(tokenizer, n_latents: int, sampling: SamplingConfig) -> pl.DataFrame:
    """Per latent: our default explanation set and the reference's default test set."""
    n_explain = sampling.n_top + sampling.n_quantiles * sampling.n_per_quantile_explain
    per_latent = n_explain + N_TEST_ACTIVATING + N_TEST_NON_ACTIVATING
    texts = windows(tokenizer, n_latents * per_latent, seed=0)
    rng = np.random.default_rng(1)
    rows = []
    for latent in range(n_latents):
        for i in range(per_latent):
            strs = texts[latent * per_latent + i]
            split = "explain" if i < n_explain else "test"
            activating = i < n_explain + N_TEST_ACTIVATING
            peak = WINDOW // 4
            acts = [0.0] * WINDOW
            if activating:  # a peak and a weaker neighbour, as real latents often fire
                acts[peak], acts[peak + 1] = float(rng.uniform(2, 8)), float(rng.uniform(0.2, 1.5))
            quantile = -1 if not activating or i < sampling.n_top else (i % sampling.n_quantiles)
            rows.append({"latent": latent, "split": split, "kind": "quantile" if activating else "random",
                         "quantile": quantile, "seq": latent * per_latent + i, "start": 0,
                         "peak_index": peak if activating else -1, "tokens": list(range(WINDOW)),
                         "token_strs": strs, "acts": acts, "max_act": max(acts), "activating": activating})
    return pl.DataFrame(rows, schema=CONTEXT_SCHEMA)


def count(tokenizer, messages: list[dict]) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)


def uncached(prompts: list[list[int]]) -> int:
    """Tokens a prefix-caching server computes: each prompt minus its longest prefix shared with an earlier one."""
    total = 0
    for i, p in enumerate(prompts):
        shared = 0
        for q in prompts[:i]:
            n = min(len(p), len(q))
            same = np.flatnonzero(np.asarray(p[:n]) != np.asarray(q[:n]))
            shared = max(shared, int(same[0]) if same.size else n)
        total += len(p) - shared
    return total


def ours(tokenizer, table: pl.DataFrame, n_latents: int, per_prompt: int) -> dict[str, dict[str, float]]:
    sampling, explainer = SamplingConfig(), ExplainerConfig()
    skipped = pl.DataFrame(schema={"latent": pl.Int64, "reason": pl.Utf8})
    recorder = Recorder()
    explained = explain_latents(table, skipped, recorder, explainer, sampling)
    by_kind: dict[str, list[ChatRequest]] = {"explanation": list(recorder.requests)}
    for kind in ("detection", "fuzzing"):
        recorder.requests = []
        score_latents(table, explained, recorder, ScorerConfig(kinds=[kind], examples_per_prompt=per_prompt,
                                                               chance_baseline=False), sampling, mode="list")
        by_kind[kind] = list(recorder.requests)
    out = {}
    for kind, requests in by_kind.items():
        prompts = [count(tokenizer, list(r.messages)) for r in requests]
        out[kind] = {"requests": len(requests) / n_latents, "prompt": sum(map(len, prompts)) / n_latents,
                     "uncached": uncached(prompts) / n_latents,
                     "max_completion": sum(r.max_tokens for r in requests) / n_latents}
    return out


def load_reference(path: Path) -> types.SimpleNamespace:
    """The reference's prompt modules, loaded from a checkout without importing its package."""
    def module(name: str, rel: str, package: str | None = None) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, path / rel)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        if package:
            mod.__package__ = package
        sys.modules[name] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        return mod

    sys.modules["refexplain"] = types.ModuleType("refexplain")
    sys.modules["refexplain"].__path__ = [str(path / "delphi/explainers/default")]  # type: ignore[attr-defined]
    module("refexplain.prompts", "delphi/explainers/default/prompts.py", "refexplain")
    builder = module("refexplain.prompt_builder", "delphi/explainers/default/prompt_builder.py", "refexplain")
    return types.SimpleNamespace(
        explain=builder.build_prompt,
        detection=module("refdetection", "delphi/scorers/classifier/prompts/detection_prompt.py").prompt,
        fuzzing=module("reffuzz", "delphi/scorers/classifier/prompts/fuzz_prompt.py").prompt)


def highlight(strs: list[str], acts: list[float], threshold: float = 0.3) -> str:
    """The reference's rendering: tokens above threshold x max wrapped in << >>."""
    out, inside, top = "", False, max(acts) or 1.0
    for s, a in zip(strs, acts):
        on = a > top * threshold and max(acts) > 0
        if on and not inside:
            out += "<<"
        if inside and not on:
            out += ">>"
        out, inside = out + s, on
    return out + (">>" if inside else "")


def reference(tokenizer, ref: types.SimpleNamespace, table: pl.DataFrame, n_latents: int) -> dict[str, dict[str, float]]:
    sums: dict[str, list[list[int]]] = {"explanation": [], "detection": [], "fuzzing": []}
    for latent in range(n_latents):
        rows = table.filter(pl.col("latent") == latent)
        explain = rows.filter((pl.col("split") == "explain") & pl.col("activating"))
        shown = [highlight(s, a) for s, a in zip(explain["token_strs"], explain["acts"])]
        shown = (shown * (REFERENCE_EXPLAIN_EXAMPLES // len(shown) + 1))[:REFERENCE_EXPLAIN_EXAMPLES]
        sums["explanation"].append(count(tokenizer, ref.explain(
            "\n".join(f"Example {i + 1}: {t}" for i, t in enumerate(shown)))))
        test = rows.filter(pl.col("split") == "test")
        for kind in ("detection", "fuzzing"):
            texts = ["".join(s) if kind == "detection" else highlight(s, a) if act else "".join(s)
                     for s, a, act in zip(test["token_strs"], test["acts"], test["activating"])]
            for lo in range(0, len(texts), PER_PROMPT):
                batch = "\n".join(f"Example {i}: {t}" for i, t in enumerate(texts[lo : lo + PER_PROMPT]))
                sums[kind].append(count(tokenizer, getattr(ref, kind)(batch, EXPLANATION)))
    return {kind: {"requests": len(p) / n_latents, "prompt": sum(map(len, p)) / n_latents,
                   "uncached": uncached(p) / n_latents} for kind, p in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, help="a checkout of EleutherAI/delphi")
    parser.add_argument("--latents", type=int, default=8)
    parser.add_argument("--per-prompt", type=int, default=PER_PROMPT,
                        help="our test windows per scoring prompt (the reference stays at its default 5)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(loadable("smollm2-135m-instruct"))
    table = contexts_table(tokenizer, args.latents, SamplingConfig())
    def answer(n: int) -> int:  # a list of n labels, e.g. [1,0,0,1,0]
        return len(tokenizer("[" + ",".join("10"[i % 2] for i in range(n)) + "]")["input_ids"])

    explanation = len(tokenizer(f"Explanation: {EXPLANATION}")["input_ids"])
    typical = {"explanation": explanation, "detection": answer(args.per_prompt), "fuzzing": answer(args.per_prompt)}
    typical_ref = {"explanation": explanation, "detection": answer(PER_PROMPT), "fuzzing": answer(PER_PROMPT)}
    mine = ours(tokenizer, table, args.latents, args.per_prompt)
    ref = reference(tokenizer, load_reference(args.reference), table, args.latents) if args.reference else None
    print(f"per latent, {N_TEST_ACTIVATING}+{N_TEST_NON_ACTIVATING} test windows of {WINDOW} tokens, "
          f"{args.per_prompt} per prompt (reference {PER_PROMPT}); SmolLM2 tokenizer and chat template; "
          f"{args.latents} latents")
    for kind, m in mine.items():
        line = (f"{kind:11s} ours: {m['requests']:5.1f} requests, {m['prompt']:7.0f} prompt tokens "
                f"({m['uncached']:6.0f} past a shared prefix), completion <= {m['max_completion']:5.0f} "
                f"(typical {typical[kind] * m['requests']:4.0f})")
        if ref:
            r = ref[kind]
            line += (f" | reference: {r['requests']:5.1f} requests, {r['prompt']:7.0f} prompt tokens "
                     f"({r['uncached']:6.0f} past a shared prefix), typical completion "
                     f"{typical_ref[kind] * r['requests']:4.0f} | ours/reference prompt {m['prompt'] / r['prompt']:.2f}")
        print(line)


if __name__ == "__main__":
    main()
