"""Prompt building and answer parsing for the explainer and the detection/fuzzing scorers.

Pure: strings in, strings out. Every template is versioned by a short sha256 of its text and
its rendered few-shot conversation (`PROMPT_VERSIONS`), so a stored explanation or score names
the exact prompt that produced it.

Rendering conventions (shared by explainers, scorers and the few-shots, so they cannot drift):
- a window is rendered by joining its decoded token strings; newlines and tabs are written as
  the two-character escapes `\\n` / `\\t` so that each example stays on one line;
- highlighted tokens are wrapped in `<<` `>>`; adjacent highlighted tokens form one span, and
  the span's leading/trailing whitespace is moved outside the markers (` <<load_config>>`).
  A literal `<<`/`>>` in the text (Python bit shifts) is written `< <`/`> >` in highlighted
  renders so that it cannot be mistaken for a marker.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from .llm_api import Message, TokenLogprobs

OPEN, CLOSE = "<<", ">>"
MAX_EXPLANATION_CHARS = 300
TOP_TOKENS_N = 5  # tokens named by the no-LLM baseline explanation

ExplainerKind = Literal["default", "contrastive"]
ScorerKind = Literal["detection", "fuzzing"]
T = TypeVar("T")


@dataclass(frozen=True)
class Example:
    """One context window: decoded tokens and this latent's activation on each (0 = inactive)."""

    token_strs: tuple[str, ...]
    acts: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.token_strs) != len(self.acts):
            raise ValueError(f"{len(self.token_strs)} tokens but {len(self.acts)} activations")

    @property
    def active(self) -> tuple[bool, ...]:
        return tuple(a > 0 for a in self.acts)


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed answer, or why it could not be parsed (exactly one of the two is set)."""

    value: T | None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


# --------------------------------------------------------------------------------------------
# Rendering


def _escape(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def render_plain(token_strs: Sequence[str]) -> str:
    return _escape("".join(token_strs))


def render_highlighted(token_strs: Sequence[str], mask: Sequence[bool]) -> str:
    """Join tokens, wrapping each maximal run of masked tokens in one `<<...>>` span."""
    if len(token_strs) != len(mask):
        raise ValueError(f"{len(token_strs)} tokens but mask of length {len(mask)}")
    out: list[str] = []
    i = 0
    while i < len(token_strs):
        j = i
        while j < len(token_strs) and mask[j] == mask[i]:
            j += 1
        text = _escape("".join(token_strs[i:j])).replace(OPEN, "< <").replace(CLOSE, "> >")
        if bool(mask[i]):
            core = text.strip()
            if core:  # keep surrounding whitespace outside the markers
                lead = text[: len(text) - len(text.lstrip())]
                trail = text[len(text.rstrip()) :]
                text = f"{lead}{OPEN}{core}{CLOSE}{trail}"
            else:  # a whitespace-only run: mark it as is rather than drop it
                text = f"{OPEN}{text}{CLOSE}"
        out.append(text)
        i = j
    return "".join(out)


def normalise_acts(acts: Sequence[float], max_act: float) -> list[int]:
    """Activations on a 0-10 integer scale relative to `max_act`, rounded half up. Any active
    token gets at least 1, so every highlighted token has a non-zero value; inactive tokens 0."""
    if max_act <= 0:
        return [0] * len(acts)
    return [min(10, max(1, math.floor(10 * a / max_act + 0.5))) if a > 0 else 0 for a in acts]


def _activation_line(ex: Example, max_act: float) -> str:
    levels = normalise_acts(ex.acts, max_act)
    pairs = [f"{json.dumps(_escape(t))} {v}" for t, v in zip(ex.token_strs, levels, strict=True) if v > 0]
    return "Activations: " + ", ".join(pairs)


# --------------------------------------------------------------------------------------------
# Explainer prompts

_EXPLAIN_INTRO = (
    "You are helping to interpret a neural network. A language model has an internal latent "
    "(a learned feature) and you will see short text excerpts in which it is active. In each "
    "excerpt, the tokens on which the latent fires are marked like {open}this{close}."
)
_EXPLAIN_ACTS_NOTE = (
    " Below each excerpt the marked tokens are listed with their activation strength on a scale "
    "from 0 to 10, where 10 is the strongest activation among the excerpts."
)
_EXPLAIN_CONTRAST_NOTE = (
    " You will also see excerpts in which the latent stays silent; a good description covers the "
    "first group and rules out the second."
)
_EXPLAIN_TASK = (
    "\n\nFind what the marked tokens have in common, taking the words around them into account, "
    "and describe it as one short phrase. Be concrete: say which kind of token it fires on and, "
    "if it matters, in what context. Do not mention the markers, do not copy whole excerpts, "
    "and write at most one sentence."
)
_EXPLAIN_FORMAT = "\n\nAnswer with one line:\nExplanation: <your description>"
_EXPLAIN_FORMAT_COT = (
    "\n\nFirst reason briefly (at most three sentences) about which tokens are marked and what "
    "they share. Then end with one line:\nExplanation: <your description>"
)
_FIRES_HEADER = "Excerpts where the latent fires:"
_SILENT_HEADER = "Excerpts where the latent does not fire:"


def _tok(*pieces: tuple[str, float] | str) -> Example:
    """Few-shot helper: plain strings are inactive tokens, (token, act) pairs are active."""
    strs = tuple(p if isinstance(p, str) else p[0] for p in pieces)
    acts = tuple(0.0 if isinstance(p, str) else p[1] for p in pieces)
    return Example(strs, acts)


@dataclass(frozen=True)
class _ExplainShot:
    activating: tuple[Example, ...]
    negatives: tuple[Example, ...]
    reasoning: str
    explanation: str
    contrastive_explanation: str


_EXPLAIN_SHOTS = (
    _ExplainShot(
        activating=(
            _tok(" The", " train", " leaves", " in", " 15", (" minutes", 6.0), " from", " platform", " 2"),
            _tok(" It", " took", " three", (" weeks", 8.0), " and", " two", (" days", 5.0), " to", " arrive"),
            _tok(" Wait", " a", " few", (" seconds", 4.0), " before", " retrying", "."),
        ),
        negatives=(
            _tok(" The", " minutes", " of", " the", " meeting", " were", " approved", "."),
            _tok(" Time", " flies", " when", " you", " are", " busy", "."),
        ),
        reasoning="The marked tokens are minutes, weeks, days and seconds. Each names a unit of "
        "time and follows a number or a quantity word such as 'a few'.",
        explanation="units of time (seconds, days, weeks) counted by a preceding number",
        contrastive_explanation="units of time counted by a preceding number, not other senses "
        "of words like 'minutes' or 'time'",
    ),
    _ExplainShot(
        activating=(
            _tok("def", (" load", 7.0), ("_config", 9.0), "(", "path", "):"),
            _tok("    ", "def", (" __", 4.0), ("init", 6.0), ("__", 5.0), "(", "self", "):"),
            _tok("async", " def", (" fetch", 8.0), "(", "url", "):"),
        ),
        negatives=(
            _tok("result", " =", " load", "_config", "(", "path", ")"),
            _tok("class", " Loader", ":"),
        ),
        reasoning="The marked spans are load_config, __init__ and fetch. Each is the name of a "
        "Python function written right after the def keyword.",
        explanation="the name of a Python function in its def statement",
        contrastive_explanation="the name of a Python function where it is defined after def, "
        "not where it is called",
    ),
)


def _explain_user(activating: Sequence[Example], negatives: Sequence[Example], show_activations: bool) -> str:
    max_act = max((a for ex in activating for a in ex.acts), default=0.0)
    lines = [_FIRES_HEADER]
    for i, ex in enumerate(activating, 1):
        lines.append(f"Example {i}: {render_highlighted(ex.token_strs, ex.active)}")
        if show_activations:
            lines.append(_activation_line(ex, max_act))
    if negatives:
        lines += ["", _SILENT_HEADER]
        lines += [f"Counter-example {i}: {render_plain(ex.token_strs)}" for i, ex in enumerate(negatives, 1)]
    return "\n".join(lines)


def _explain_system(kind: ExplainerKind, show_activations: bool, chain_of_thought: bool) -> str:
    text = _EXPLAIN_INTRO.format(open=OPEN, close=CLOSE)
    if show_activations:
        text += _EXPLAIN_ACTS_NOTE
    if kind == "contrastive":
        text += _EXPLAIN_CONTRAST_NOTE
    return text + _EXPLAIN_TASK + (_EXPLAIN_FORMAT_COT if chain_of_thought else _EXPLAIN_FORMAT)


def build_explainer_messages(
    activating: Sequence[Example],
    negatives: Sequence[Example] = (),
    *,
    kind: ExplainerKind = "default",
    show_activations: bool = False,
    chain_of_thought: bool = False,
) -> tuple[Message, ...]:
    """System instructions, the worked few-shot turns, then this latent's examples.
    Negatives are shown only for the contrastive kind."""
    if not activating:
        raise ValueError("an explainer prompt needs at least one activating example")
    contrastive = kind == "contrastive"
    messages: list[Message] = [
        {"role": "system", "content": _explain_system(kind, show_activations, chain_of_thought)}
    ]
    for shot in _EXPLAIN_SHOTS:
        answer = shot.contrastive_explanation if contrastive else shot.explanation
        reasoning = f"{shot.reasoning}\n" if chain_of_thought else ""
        answer = f"{reasoning}Explanation: {answer}"
        user = _explain_user(shot.activating, shot.negatives if contrastive else (), show_activations)
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    user = _explain_user(activating, negatives if contrastive else (), show_activations)
    messages.append({"role": "user", "content": user})
    return tuple(messages)


def explainer_prompt_key(kind: str, show_activations: bool = False, chain_of_thought: bool = False) -> str:
    """Key into PROMPT_VERSIONS for an explainer configuration, e.g. 'explain/default+acts+cot'."""
    if kind == "top_tokens":
        return "explain/top_tokens"
    return f"explain/{kind}" + ("+acts" if show_activations else "") + ("+cot" if chain_of_thought else "")


# --------------------------------------------------------------------------------------------
# Top-tokens baseline (no LLM)

_TOP_TOKENS_TEMPLATE = "tokens: {tokens}"  # tokens: JSON-quoted, comma-separated, heaviest first


def top_tokens_explanation(examples: Sequence[Example], n: int = TOP_TOKENS_N) -> str | None:
    """The `n` token strings with the largest summed activation over `examples`, e.g.
    `tokens: " def", " class", "("`; ties broken by token text. None if nothing is active."""
    weight: dict[str, float] = {}
    for ex in examples:
        for t, a in zip(ex.token_strs, ex.acts, strict=True):
            if a > 0:
                weight[t] = weight.get(t, 0.0) + a
    if not weight:
        return None
    top = sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return _TOP_TOKENS_TEMPLATE.format(tokens=", ".join(json.dumps(t) for t, _ in top))


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
    (_tok(" We", " waited", " 20", (" minutes", 1.0), " for", " the", " bus"), 1, 1),
    (_tok(" The", " minutes", " of", " the", " meeting", " were", (" filed", 1.0)), 0, 0),
    (_tok(" Add", " two", (" cups", 1.0), " of", " flour"), 0, 0),
    (_tok(" It", " lasted", (" four", 1.0), " days", " in", " total"), 1, 0),
    (_tok(" The", " game", " ended", " after", " 3", (" hours", 1.0)), 1, 1),
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


# --------------------------------------------------------------------------------------------
# Answer parsing

_EXPLANATION_LABEL = re.compile(r"explanation\s*:", re.IGNORECASE)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def _clean_line(line: str) -> str:
    line = line.strip()
    line = re.sub(r"^(?:[-*>#]+\s+)+", "", line)  # bullets, quote marks, headings
    while len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    return line


def parse_explanation(text: str | None, max_chars: int = MAX_EXPLANATION_CHARS) -> Parsed[str]:
    """The explanation from an explainer answer: the first non-empty line after the last
    "Explanation:" label, else the last non-empty line; markdown emphasis, bullets and
    surrounding quotes removed. Empty, overlong, word-less or placeholder answers fail."""
    if text is None or not text.strip():
        return Parsed(None, "empty answer")
    body = text.replace("**", "")
    labels = list(_EXPLANATION_LABEL.finditer(body))
    if labels:
        lines = [ln for ln in body[labels[-1].end() :].splitlines() if ln.strip()]
    else:
        lines = [ln for ln in body.splitlines() if ln.strip()][-1:]
    explanation = _clean_line(lines[0]) if lines else ""
    if not explanation:
        return Parsed(None, "empty explanation")
    if len(explanation) > max_chars:
        return Parsed(None, f"explanation too long ({len(explanation)} chars > {max_chars})")
    if not re.search(r"[^\W\d_]", explanation):
        return Parsed(None, f"explanation has no words: {explanation!r}")
    if explanation.startswith("<") and explanation.endswith(">") and OPEN not in explanation:
        return Parsed(None, f"placeholder instead of an explanation: {explanation!r}")
    return Parsed(explanation)


_VALUE = {"1": 1, "0": 0, "yes": 1, "no": 0, "true": 1, "false": 0}
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")
_ENUMERATED = re.compile(r"(?:example|ex\.?|#)?\s*(\d+)\s*[:.)=-]\s*\[?(yes|no|true|false|1|0)\b")


def _values(items: Sequence[str]) -> list[int] | None:
    items = [s.strip(_QUOTES + " .!") for s in items if s.strip()]
    if not items or any(s not in _VALUE for s in items):
        return None
    return [_VALUE[s] for s in items]


def _check_length(values: list[int], n: int, text: str) -> Parsed[list[int]]:
    if len(values) != n:
        return Parsed(None, f"expected {n} answers, got {len(values)}: {_snippet(text)}")
    return Parsed(values)


def _snippet(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


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
            return Parsed(None, f"conflicting answers for example {k}: {_snippet(text)}")
        numbered[k] = _VALUE[val]
    if numbered:
        if set(numbered) == set(range(1, n + 1)):
            return Parsed([numbered[k] for k in range(1, n + 1)])
        if len(numbered) > 1:  # clearly the numbered style, but not the right examples
            return Parsed(None, f"expected answers for examples 1..{n}, got {sorted(numbered)}: {_snippet(text)}")

    bare = re.sub(r"^\s*(?:answer|answers|reply)\s*:", "", body.strip())
    values = _values(re.split(r"[,;\s]+", bare))
    if values is not None:
        return _check_length(values, n, text)
    return Parsed(None, f"unparseable answer: {_snippet(text)}")


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
# Versions


def _version(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _explainer_version(kind: ExplainerKind, acts: bool, cot: bool) -> str:
    # The few-shot conversation is rendered by the same code as real prompts; hashing it
    # (with a placeholder final turn) captures the template text and the worked examples.
    probe = build_explainer_messages(
        (_tok("x", ("y", 1.0)),), (_tok("z"),), kind=kind, show_activations=acts, chain_of_thought=cot
    )
    return _version(probe)


PROMPT_VERSIONS: dict[str, str] = {
    **{
        explainer_prompt_key(kind, acts, cot): _explainer_version(kind, acts, cot)
        for kind in ("default", "contrastive")
        for acts in (False, True)
        for cot in (False, True)
    },
    "explain/top_tokens": _version(_TOP_TOKENS_TEMPLATE, TOP_TOKENS_N),
    "detection": _version(build_detection_messages("<explanation>", [["x"]])),
    "fuzzing": _version(build_fuzzing_messages("<explanation>", [(["x"], [True])])),
}
