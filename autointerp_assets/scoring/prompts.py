"""Detection and fuzzing prompts, and the parsers of their answers (0/1 lists, P("1") from logprobs).

Windows are rendered by `llm.prompts`, the same code the explainer uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from ..llm.api import Message, TokenLogprobs
from ..llm.prompts import CLOSE, OPEN, QUOTES, Parsed, render_highlighted, render_plain, snippet, tok, version

ScorerKind = Literal["detection", "fuzzing"]

# --------------------------------------------------------------------------------------------
# Scorer prompts

_DETECTION_SYSTEM = (
    "You are checking a description of a latent (a learned feature) of a language model. You "
    "get the description and some numbered text excerpts. The latent is active somewhere in some "
    "of the excerpts and silent in the others. For each excerpt decide whether the description "
    "predicts that the latent is active in it: 1 if it does, 0 if it does not."
    "\n\nReply with nothing but a list with one value per excerpt, in order, e.g. [1, 0, 0]."
)
_FUZZING_SYSTEM = (
    "You are checking a description of a latent (a learned feature) of a language model. You "
    f"get the description and some numbered text excerpts in which some tokens are marked like "
    f"{OPEN}this{CLOSE}. In some excerpts the marked tokens are exactly where the latent fires; "
    "in others the markers were placed on the wrong tokens. For each excerpt decide whether the "
    "marked tokens are ones the description says the latent fires on: 1 if they are, 0 if not."
    "\n\nReply with nothing but a list with one value per excerpt, in order, e.g. [1, 0, 0]."
)
_SCORER_USER_TAIL = "Reply with a list of exactly {n} values, each 1 or 0."


def _scorer_user(explanation: str, rendered: Sequence[str]) -> str:
    lines = [f"Description: {explanation}", ""]
    lines += [f"Example {i}: {text}" for i, text in enumerate(rendered, 1)]
    lines += ["", _SCORER_USER_TAIL.format(n=len(rendered))]
    return "\n".join(lines)


def _answer_list(labels: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in labels) + "]"


_TIME_UNITS = "units of time counted by a preceding number"
# (tokens, highlight mask for fuzzing, detection label, fuzzing label)
_SCORER_SHOT = (
    (tok(" We", " waited", " 20", (" minutes", 1.0), " for", " the", " bus"), 1, 1),
    (tok(" The", " minutes", " of", " the", " meeting", " were", (" filed", 1.0)), 0, 0),
    (tok(" Add", " two", (" cups", 1.0), " of", " flour"), 0, 0),
    (tok(" It", " lasted", (" four", 1.0), " days", " in", " total"), 1, 0),
    (tok(" The", " game", " ended", " after", " 3", (" hours", 1.0)), 1, 1),
)


def build_detection_messages(explanation: str, windows: Sequence[Sequence[str]]) -> tuple[Message, ...]:
    """Explanation plus numbered plain-text windows (token strings); the answer is a 0/1 list."""
    shot_user = _scorer_user(_TIME_UNITS, [render_plain(ex.token_strs) for ex, _, _ in _SCORER_SHOT])
    shot_answer = _answer_list([det for _, det, _ in _SCORER_SHOT])
    return (
        {"role": "system", "content": _DETECTION_SYSTEM},
        {"role": "user", "content": shot_user},
        {"role": "assistant", "content": shot_answer},
        {"role": "user", "content": _scorer_user(explanation, [render_plain(w) for w in windows])},
    )


def build_fuzzing_messages(
    explanation: str, windows: Sequence[tuple[Sequence[str], Sequence[bool]]]
) -> tuple[Message, ...]:
    """Explanation plus numbered windows with marked tokens (token strings, highlight mask)."""
    shot_user = _scorer_user(
        _TIME_UNITS, [render_highlighted(ex.token_strs, ex.active) for ex, _, _ in _SCORER_SHOT]
    )
    shot_answer = _answer_list([fuzz for _, _, fuzz in _SCORER_SHOT])
    return (
        {"role": "system", "content": _FUZZING_SYSTEM},
        {"role": "user", "content": shot_user},
        {"role": "assistant", "content": shot_answer},
        {"role": "user", "content": _scorer_user(explanation, [render_highlighted(t, m) for t, m in windows])},
    )


def scorer_max_tokens(n_examples: int) -> int:
    """Room for "[1, 0, ...]" (about 2 tokens per value) plus a little slack for formatting."""
    return 4 * n_examples + 8


_VALUE = {"1": 1, "0": 0, "yes": 1, "no": 0, "true": 1, "false": 0}
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_ENUMERATED = re.compile(r"(?:example|ex\.?|#)?\s*(\d+)\s*[:.)=-]\s*\[?(yes|no|true|false|1|0)\b")


def _values(items: Sequence[str]) -> list[int] | None:
    items = [s.strip(QUOTES + " .!") for s in items if s.strip()]
    if not items or any(s not in _VALUE for s in items):
        return None
    return [_VALUE[s] for s in items]


def _check_length(values: list[int], n: int, text: str) -> Parsed[list[int]]:
    if len(values) != n:
        return Parsed(None, f"expected {n} answers, got {len(values)}: {snippet(text)}")
    return Parsed(values)


def parse_binary_answers(text: str | None, n: int) -> Parsed[list[int]]:
    """A list of `n` 0/1 answers from a scorer reply. Accepted, in this order of preference:
    the last bracketed list ("[1, 0, 1]", "['yes', 'no']"); numbered answers covering 1..n
    ("Example 1: yes", "2. 0"); a bare sequence ("1 0 1", "Answer: 1, 0, 1"). Anything else,
    or a list of the wrong length, fails with the reason."""
    if text is None or not text.strip():
        return Parsed(None, "empty answer")
    body = text.lower().replace("**", "")

    for match in reversed(list(_BRACKETED.finditer(body))):
        values = _values(re.split(r"[,;\s]+", match.group(1)))
        if values is not None:
            return _check_length(values, n, text)

    numbered: dict[int, int] = {}
    for idx, val in _ENUMERATED.findall(body):
        k = int(idx)
        if numbered.get(k, _VALUE[val]) != _VALUE[val]:
            return Parsed(None, f"conflicting answers for example {k}: {snippet(text)}")
        numbered[k] = _VALUE[val]
    if numbered:
        if set(numbered) == set(range(1, n + 1)):
            return Parsed([numbered[k] for k in range(1, n + 1)])
        if len(numbered) > 1:  # clearly the numbered style, but not the right examples
            return Parsed(None, f"expected answers for examples 1..{n}, got {sorted(numbered)}: {snippet(text)}")

    bare = re.sub(r"^\s*(?:answer|answers|reply)\s*:", "", body.strip())
    values = _values(re.split(r"[,;\s]+", bare))
    if values is not None:
        return _check_length(values, n, text)
    return Parsed(None, f"unparseable answer: {snippet(text)}")


def _digit(token: str) -> str | None:
    core = token.strip().strip("[](),;.'\"")
    return core if core in ("0", "1") else None


def answer_probabilities(logprobs: Sequence[TokenLogprobs] | None, answers: Sequence[int]) -> list[float] | None:
    """P("1") per answer from the top-logprobs of the generated 0/1 tokens: the probability mass
    on "1"-like alternatives over the mass on "0"-like and "1"-like ones. The generated digit
    tokens must line up one-to-one with the parsed answers; otherwise (numbered answers,
    merged tokens such as "1,0") None, because the positions cannot be trusted."""
    if logprobs is None:
        return None
    digits = [lp for lp in logprobs if _digit(lp.token) is not None]
    if len(digits) != len(answers) or any(
        int(_digit(lp.token)) != a for lp, a in zip(digits, answers, strict=True)
    ):
        return None
    probs = []
    for lp in digits:
        mass = {"0": 0.0, "1": 0.0}
        for alt, logp in lp.top.items():
            d = _digit(alt)
            if d is not None:
                mass[d] += math.exp(logp)
        total = mass["0"] + mass["1"]
        probs.append(mass["1"] / total if total > 0 else float(_digit(lp.token) == "1"))
    return probs

PROMPT_VERSIONS: dict[str, str] = {
    "detection": version(build_detection_messages("<explanation>", [["x"]])),
    "fuzzing": version(build_fuzzing_messages("<explanation>", [(["x"], [True])])),
}
