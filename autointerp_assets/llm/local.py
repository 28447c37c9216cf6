"""`ChatLLM` in-process with transformers: no server, no key, works offline.

Greedy decoding (the request's temperature is part of the cache key but not used),
batched with left padding, and top logprobs from each step's raw logits. bf16 is the
default because it generated faster than fp32 on the 2-core dev CPU (batch 8:
~127 vs ~79 tok/s; batch 1: ~26 vs ~16 tok/s). Threads are torch's default.
The model loads lazily, so a fully cached rerun never loads it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ..data.model_files import BUILTIN_SMOLLM2, loadable
from .api import ChatRequest, Completion, TokenLogprobs, failed
from .cache import CachedAccounting, ResponseCache

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class LocalChatLLM(CachedAccounting):
    supports_logprobs = True

    def __init__(
        self,
        model: str = BUILTIN_SMOLLM2,
        *,
        cache: ResponseCache | None = None,
        dtype: str = "bfloat16",
        device: str = "cpu",
        batch_size: int = 8,
    ):
        super().__init__(cache)  # in-process: cost 0
        self.model_name = model
        self.dtype = _DTYPES[dtype]
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
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
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
        out = model.generate(**enc, generation_config=config)
        prompt_len = enc["input_ids"].shape[1]
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
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=min(len(generated), stop + 1),  # the EOS counts, as servers do
                )
            )
        return completions


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
