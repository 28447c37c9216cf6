"""`ChatLLM` in-process with transformers: no server, no key, works offline.

Greedy decoding (the request's temperature is part of the cache key but not used),
batched with left padding, the batch's common prompt prefix computed once (`_batch_inputs`),
and top logprobs from each step's raw logits. Prompt scoring
(`score_prompts`) runs one forward pass per batch of right-padded raw texts and reads the
log-softmax at the positions asked for, in fp32 weights by default (`score_dtype`): in bf16
the padding of a batch moved a 13-token sum by 0.2 nats on the dev CPU, noise of the size of
the differences surprisal measures; in fp32 by 1e-5. bf16 is the
default because it generated faster than fp32 on the 2-core dev CPU (batch 8:
~127 vs ~79 tok/s; batch 1: ~26 vs ~16 tok/s). Threads are torch's default.
The model loads lazily, so a fully cached rerun never loads it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ..data.model_files import BUILTIN_SMOLLM2, loadable
from .api import ChatRequest, Completion, PromptScore, PromptToken, ScoreRequest, TokenLogprobs, failed, failed_score
from .cache import CachedAccounting, ResponseCache

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class LocalChatLLM(CachedAccounting):
    supports_logprobs = True
    supports_prompt_logprobs = True

    def __init__(
        self,
        model: str = BUILTIN_SMOLLM2,
        *,
        cache: ResponseCache | None = None,
        dtype: str = "bfloat16",
        device: str = "cpu",
        batch_size: int = 16,
        score_dtype: str = "float32",
    ):
        super().__init__(cache)  # in-process: cost 0
        self.model_name = model
        self.dtype = _DTYPES[dtype]
        self.score_dtype = _DTYPES[score_dtype]
        self._scorer: Any = None  # the model in score_dtype, made on first use
        self.device = device
        self.batch_size = max(1, batch_size)
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()  # one generate at a time; torch already uses every core

    def __repr__(self) -> str:
        return f"LocalChatLLM(model={self.model_name!r})"

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            source = loadable(self.model_name)
            tokenizer = AutoTokenizer.from_pretrained(source)
            tokenizer.padding_side = "left"  # generated tokens must line up at the right edge
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, dtype=self.dtype).to(self.device).eval()
            self._loaded = (tokenizer, model)
        return self._loaded

    def chat_prompt(self, user: str) -> str:
        tokenizer = self._load()[0]
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True)

    def _complete_many(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        results, misses = self._lookup(requests)
        with self._lock:
            # Group equal max_tokens, then similar prompt lengths, so batches waste little padding.
            order = sorted(misses, key=lambda i: (requests[i].max_tokens, _prompt_chars(requests[i])))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                for i, completion in zip(batch, self._generate([requests[i] for i in batch]), strict=True):
                    results[i] = self._finish(requests[i], completion)
        self._flush_cache()
        return results  # type: ignore[return-value]  # every slot is filled

    def _score_many(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        results, misses = self._lookup_scores(requests)
        with self._lock:
            order = sorted(misses, key=lambda i: len(requests[i].prompt))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                try:
                    scores = self._score_batch([requests[i] for i in batch])
                except Exception as e:  # noqa: BLE001 - a failed batch becomes counted failures
                    scores = [failed_score("scoring", f"{type(e).__name__}: {e}"[:300]) for _ in batch]
                for i, score in zip(batch, scores, strict=True):
                    results[i] = self._finish_score(requests[i], score)
        self._flush_cache()
        return results  # type: ignore[return-value]  # every slot is filled

    def _scoring_model(self) -> Any:
        if self._scorer is None:
            _, model = self._load()
            self._scorer = model if self.score_dtype == self.dtype else copy.deepcopy(model).to(self.score_dtype)
        return self._scorer

    @torch.inference_mode()
    def _score_batch(self, batch: list[ScoreRequest]) -> list[PromptScore]:
        tokenizer, model = self._load()[0], self._scoring_model()
        enc = tokenizer([r.prompt for r in batch], return_tensors="pt", padding=True, padding_side="right",
                        add_special_tokens=False, return_offsets_mapping=True)
        ids, mask, offsets = enc["input_ids"], enc["attention_mask"], enc["offset_mapping"]  # [B, T] ([B, T, 2])
        # Token t is predicted at position t - 1; never token 0 (nothing before it).
        wanted = [[t for t in range(1, int(mask[row].sum())) if offsets[row, t, 0] >= r.score_from]
                  for row, r in enumerate(batch)]
        first = min((w[0] for w in wanted if w), default=ids.shape[1])
        keep = ids.shape[1] - (first - 1)  # logits of positions first-1 .. T-1 only
        logits = model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                       logits_to_keep=keep).logits  # [B, keep, vocab]
        out = []
        for row, request in enumerate(batch):
            tokens = []
            if wanted[row]:
                positions = torch.tensor(wanted[row]) - 1 - (ids.shape[1] - keep)
                logprobs = logits[row, positions].float().log_softmax(-1)  # [n, vocab]
                chosen = ids[row, wanted[row]]
                own = logprobs.gather(1, chosen.to(logprobs.device)[:, None])[:, 0].tolist()
                tops = _alternatives(tokenizer, logprobs, request.top_logprobs) if request.top_logprobs else None
                for j, t in enumerate(wanted[row]):
                    text = request.prompt[int(offsets[row, t, 0]) : int(offsets[row, t, 1])]
                    tokens.append(PromptToken(text, int(offsets[row, t, 0]), own[j], tops[j] if tops else None))
            out.append(PromptScore(tokens=tuple(tokens), prompt_tokens=int(mask[row].sum())))
        return out

    def _generate(self, batch: list[ChatRequest]) -> list[Completion]:
        try:
            return self._generate_batch(batch)
        except Exception as e:  # noqa: BLE001 - a failed batch becomes counted failures, not a crash
            return [failed("generation", f"{type(e).__name__}: {e}"[:300]) for _ in batch]

    @torch.inference_mode()
    def _generate_batch(self, batch: list[ChatRequest]) -> list[Completion]:
        tokenizer, model = self._load()
        prompts = [
            tokenizer.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True) for r in batch
        ]
        # The chat template already writes the special tokens.
        rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        ids, mask, cache = _batch_inputs(model, rows, tokenizer.pad_token_id, self.device)
        want_logprobs = any(r.top_logprobs for r in batch)
        eos_ids = _eos_ids(model, tokenizer)
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max(r.max_tokens for r in batch),
            eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id,
            output_logits=want_logprobs,
            return_dict_in_generate=True,
        )
        out = model.generate(input_ids=ids, attention_mask=mask, cache=cache, generation_config=config)
        prompt_len = ids.shape[1]
        # (batch, steps, vocab) in fp32: bf16 log_softmax is too coarse for scoring.
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1) if want_logprobs else None
        completions = []
        for row, request in enumerate(batch):
            generated = out.sequences[row, prompt_len:].tolist()[: request.max_tokens]
            stop = next((t for t, tok in enumerate(generated) if tok in eos_ids), len(generated))
            kept = generated[:stop]
            completions.append(
                Completion(
                    text=tokenizer.decode(kept, skip_special_tokens=True),
                    logprobs=_top_logprobs(tokenizer, kept, logprobs[row], request.top_logprobs)
                    if logprobs is not None and request.top_logprobs
                    else None,
                    prompt_tokens=len(rows[row]),
                    completion_tokens=min(len(generated), stop + 1),  # the EOS counts, as servers do
                )
            )
        return completions


MIN_SHARED_PREFIX = 16  # tokens; below this, computing the prefix once saves less than it costs


def _batch_inputs(model: Any, rows: list[list[int]], pad: int, device: str) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """ids and mask [B, T] for `generate`, and the KV cache of the prompts' common prefix (None
    without one). Scoring prompts share their long instructions, so the prefix is computed once
    and each row pays only for its own tokens: its suffix is left-padded after the prefix (the
    mask hides the pads; positions come from the mask, so the suffix continues the prefix's)."""
    shared = _shared_prefix(rows) if len(rows) > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    width = max(len(r) for r in rows) - shared
    ids = torch.full((len(rows), shared + width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :shared], mask[i, :shared] = torch.tensor(r[:shared], dtype=torch.long), 1
        suffix = r[shared:]
        ids[i, shared + width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
        mask[i, shared + width - len(suffix) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    if not shared:
        return ids, mask, None
    cache = model(input_ids=ids[:1, :shared], use_cache=True).past_key_values  # [1, heads, shared, d] per layer
    cache.batch_repeat_interleave(len(rows))
    return ids, mask, cache


def _shared_prefix(rows: list[list[int]]) -> int:
    """Leading tokens every row has in common, leaving each row at least one token of its own
    (generation needs one uncached token to start from)."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def _prompt_chars(request: ChatRequest) -> int:
    return sum(len(m["content"]) for m in request.messages)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})


def _top_logprobs(tokenizer: Any, tokens: list[int], step_logprobs: torch.Tensor, n: int) -> tuple[TokenLogprobs, ...]:
    out = []
    for step, token_id in enumerate(tokens):
        values, ids = step_logprobs[step].topk(n)
        top: dict[str, float] = {}
        # Distinct ids can decode to the same string (byte pieces); keep the likelier one.
        for value, alt in zip(values.tolist(), ids.tolist(), strict=True):
            top.setdefault(tokenizer.decode([alt]), value)
        token = tokenizer.decode([token_id])
        top.setdefault(token, float(step_logprobs[step, token_id]))
        out.append(TokenLogprobs(token=token, top=top))
    return tuple(out)


def _alternatives(tokenizer: Any, logprobs: torch.Tensor, n: int) -> list[dict[str, float]]:
    """Top-n alternatives per row of logprobs [m, vocab]; ids decoding to one string keep the likelier."""
    values, ids = logprobs.topk(n, dim=-1)
    out = []
    for row_values, row_ids in zip(values.tolist(), ids.tolist(), strict=True):
        top: dict[str, float] = {}
        for value, alt in zip(row_values, row_ids, strict=True):
            top.setdefault(tokenizer.decode([alt]), value)
        out.append(top)
    return out
