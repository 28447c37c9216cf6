"""Detection and fuzzing prompts in their three modes, and the parsers of their answers.

- `likelihood`: one window per request, nothing generated. The window is shown with the question
  what it contains (fuzzing: what its marked tokens are), and the score is the log-probability
  the LLM gives the explanation as the answer (`likelihood_request`; prompt logprobs). A ranking,
  not a decision: AUROC only. What a small local model does best, so the local default: measured
  on known-answer latents, see README.
- `single`: one window per request, answered Yes or No; P(yes) is read from the answer token's
  top logprobs (`yes_probability`).
- `list`: several numbered windows per request, answered with a 0/1 list (`parse_binary_answers`),
  P("1") per answer from the digit logprobs where they line up. Cheaper with large remote models.

No prompt claims that a request holds both classes. The list mode's worked example is drawn
in a different order for each request (`shot_order`), so its example answer varies and an answer
that copies it can be told apart (`copies_example`). Windows are rendered by `llm.prompts`, the
same code the explainer uses, and enter every prompt fenced as data (`llm.prompts.fence`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

from ..llm.api import Message, ScoreRequest, TokenLogprobs
from ..llm.prompts import (
    CLOSE,
    DATA_NOTE,
    DESCRIPTION,
    OPEN,
    QUOTES,
    Parsed,
    fence,
    render_highlighted,
    render_plain,
    snippet,
    tok,
    version,
)

ScorerKind = Literal["detection", "fuzzing"]

_INTRO = "You check a description of a latent (a learned feature) of a language model. "
_TASK = {
    "detection": "Decide whether the latent is active in a text excerpt: it is when the excerpt contains "
    "something the description says the latent responds to.",
    "fuzzing": f"In each text excerpt some tokens are marked like {OPEN}this{CLOSE}. Sometimes the marks "
    "sit exactly where the latent fires, sometimes on other tokens. Decide whether the marked tokens are "
    "ones the description says the latent fires on.",
}
_LIST_FORMAT = (
    "Any number of the numbered excerpts, from none to all, may be positive. Reply with only a list of one "
    "value per excerpt, in order: 1 if yes, 0 if no."
)
_SINGLE_FORMAT = "Reply with one word: Yes or No."
_LIST_TAIL = "Reply with a list of exactly {n} values, each 1 or 0."
_QUESTION = {
    "detection": "Does the excerpt contain what the description says the latent responds to?",
    "fuzzing": "Are the marked tokens ones the description says the latent fires on?",
}


def _system(kind: ScorerKind, mode: str) -> str:
    return _INTRO + _TASK[kind] + "\n\n" + DATA_NOTE + "\n\n" + (_LIST_FORMAT if mode == "list" else _SINGLE_FORMAT)


def _description(explanation: str) -> str:
    return f"Description: {fence(explanation, DESCRIPTION)}"


# --------------------------------------------------------------------------------------------
# Worked example of the list mode: shown in a different order in each request.

_TIME_UNITS = "units of time counted by a preceding number"
# (tokens, detection label, fuzzing label); the fuzzing marks are the tokens with activation
_SHOT = (
    (tok(" We", " waited", " 20", (" minutes", 1.0), " for", " the", " bus"), 1, 1),
    (tok(" The", " minutes", " of", " the", " meeting", " were", (" filed", 1.0)), 0, 0),
    (tok(" It", " lasted", (" four", 1.0), " days", " in", " total"), 1, 0),
    (tok(" The", " game", " ended", " after", " 3", (" hours", 1.0)), 1, 1),
)
SHOT_SIZE = len(_SHOT)


def _render(kind: ScorerKind, token_strs: Sequence[str], marks: Sequence[bool] | None) -> str:
    return render_highlighted(token_strs, marks) if kind == "fuzzing" and marks is not None else render_plain(token_strs)


def _list_user(explanation: str, rendered: Sequence[str]) -> str:
    lines = [_description(explanation), ""]
    lines += [f"Example {i}: {fence(text)}" for i, text in enumerate(rendered, 1)]
    lines += ["", _LIST_TAIL.format(n=len(rendered))]
    return "\n".join(lines)


def answer_list(labels: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in labels) + "]"


def shot_answers(kind: ScorerKind, shot_order: Sequence[int]) -> list[int]:
    """The worked example's answer list in this order (what a copying model would answer)."""
    return [_SHOT[i][1 if kind == "detection" else 2] for i in shot_order]


def list_messages(
    kind: ScorerKind,
    explanation: str,
    windows: Sequence[tuple[Sequence[str], Sequence[bool] | None]],
    shot_order: Sequence[int] = tuple(range(SHOT_SIZE)),
) -> tuple[Message, ...]:
    """System, a worked example (its windows in `shot_order`), then the numbered windows
    (token strings, fuzzing marks or None) with the explanation; the answer is a 0/1 list."""
    shot = [_SHOT[i][0] for i in shot_order]
    shot_user = _list_user(_TIME_UNITS, [_render(kind, ex.token_strs, ex.active) for ex in shot])
    return (
        {"role": "system", "content": _system(kind, "list")},
        {"role": "user", "content": shot_user},
        {"role": "assistant", "content": answer_list(shot_answers(kind, shot_order))},
        {"role": "user", "content": _list_user(explanation, [_render(kind, t, m) for t, m in windows])},
    )


def single_messages(kind: ScorerKind, explanation: str, token_strs: Sequence[str],
                    marks: Sequence[bool] | None) -> tuple[Message, ...]:
    """System, then one fenced window and the explanation; the answer is Yes or No. No worked
    example: there is no example answer to copy."""
    user = "\n".join([f"Excerpt: {fence(_render(kind, token_strs, marks))}", _description(explanation), "",
                      f"{_QUESTION[kind]} Answer Yes or No."])
    return ({"role": "system", "content": _system(kind, "single")}, {"role": "user", "content": user})


# Likelihood mode: a question about the window and the start of its answer, which the explanation
# completes. In the model's chat template where the backend knows it (the in-process model: measured
# better than plain text, README), else as plain text, which any server with prompt logprobs scores.
_LIKELIHOOD = {
    "detection": ("Text: {window}\nWhat does this text contain?", "This text contains"),
    "fuzzing": (f"Text: {{window}}\nSome tokens are marked {OPEN}like this{CLOSE}. What are the marked tokens?",
                "The marked tokens are"),
}
ChatPrompt = Callable[[str], "str | None"]  # ChatLLM.chat_prompt


def likelihood_request(kind: ScorerKind, explanation: str, token_strs: Sequence[str],
                       marks: Sequence[bool] | None, chat: ChatPrompt | None = None) -> ScoreRequest:
    """The window and its question, then the explanation as the answer; only the explanation's
    tokens are scored (`score_from`)."""
    question, answer = _LIKELIHOOD[kind]
    user = question.format(window=fence(_render(kind, token_strs, marks)))
    head = ((chat and chat(user)) or f"{user}\n\n") + answer
    text = explanation.strip().rstrip(".")
    if text[1:2].islower():  # "The word ..." continues "This text contains the word ..."; keep "DNA"
        text = text[0].lower() + text[1:]
    return ScoreRequest(f"{head} {text}.", score_from=len(head))


def list_max_tokens(n_examples: int) -> int:
    """Room for "[1, 0, ...]" (about 2 tokens per value) plus a little slack for formatting."""
    return 4 * n_examples + 8


SINGLE_MAX_TOKENS = 3  # "Yes", " No." and the like; P(yes) is read from the first answer token


# --------------------------------------------------------------------------------------------
# Parsing: list answers

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


def copies_example(answers: Sequence[int], kind: ScorerKind, shot_order: Sequence[int]) -> bool:
    """The answer is the worked example's own answer list (same length and values): it ignores
    the windows and the explanation. Only decidable when the request had as many windows."""
    example = shot_answers(kind, shot_order)
    return len(answers) == len(example) and list(answers) == example


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


# --------------------------------------------------------------------------------------------
# Parsing: single answers

_YES, _NO = frozenset({"yes", "y", "true", "1"}), frozenset({"no", "n", "false", "0"})


def _yes_no(token: str) -> int | None:
    word = token.strip().strip(QUOTES + ".,!:;*[]()").lower()
    return 1 if word in _YES else 0 if word in _NO else None


def parse_yes_no(text: str | None) -> Parsed[int]:
    """1 for an answer that starts with yes, 0 for no (case, quotes and punctuation ignored)."""
    if text is None or not text.strip():
        return Parsed(None, "empty answer")
    first = re.split(r"[\s,.!:;]+", text.strip().replace("**", ""), maxsplit=1)[0]
    value = _yes_no(first)
    return Parsed(value) if value is not None else Parsed(None, f"neither yes nor no: {snippet(text)}")


def yes_probability(logprobs: Sequence[TokenLogprobs] | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the top alternatives of the first generated token that has
    any yes- or no-like alternative; None without logprobs or without such a token."""
    for lp in logprobs or ():
        mass = [0.0, 0.0]  # no, yes
        for alt, logp in lp.top.items():
            value = _yes_no(alt)
            if value is not None:
                mass[value] += math.exp(logp)
        if mass[0] + mass[1] > 0:
            return mass[1] / (mass[0] + mass[1])
    return None


# The likelihood version is taken through a stand-in chat template: wrapping the question in the
# backend's template, where it knows one, is part of the procedure.
PROMPT_VERSIONS: dict[str, str] = {
    f"{kind}/{mode}": version(
        list_messages(kind, "<explanation>", [(["x"], [True])]) if mode == "list"
        else single_messages(kind, "<explanation>", ["x"], [True]) if mode == "single"
        else likelihood_request(kind, "<explanation>", ["x"], [True], chat=lambda u: f"<chat>{u}</chat>").prompt
    )
    for kind in ("detection", "fuzzing")
    for mode in ("likelihood", "single", "list")
}
