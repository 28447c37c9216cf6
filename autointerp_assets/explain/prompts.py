"""Explainer prompts: the system text, two worked few-shot turns, this latent's examples; and
the parser that takes one explanation out of an answer. Windows are rendered by
`llm.prompts`, the same code the scorers use, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..llm.api import Message
from ..llm.prompts import (
    CLOSE,
    DATA_NOTE,
    OPEN,
    QUOTES,
    Example,
    Parsed,
    escape,
    fence,
    normalise_acts,
    render_highlighted,
    render_plain,
    tok,
    version,
)
from . import output_side, single_token

MAX_EXPLANATION_CHARS = 300
TOP_TOKENS_N = 5  # tokens named by the no-LLM baseline explanation

ExplainerKind = Literal["default", "contrastive"]  # those built here; single_token and output_side have their modules


def _activation_line(ex: Example, max_act: float) -> str:
    levels = normalise_acts(ex.acts, max_act)
    pairs = [f"{json.dumps(escape(t))} {v}" for t, v in zip(ex.token_strs, levels, strict=True) if v > 0]
    return "Activations: " + ", ".join(pairs)


# --------------------------------------------------------------------------------------------
# Explainer prompts

_EXPLAIN_INTRO = (
    "You are helping to interpret a neural network. A language model has an internal latent "
    "(a learned feature) and you will see short text excerpts in which it is active. In each "
    "excerpt, the tokens on which the latent fires are marked like {open}this{close}. "
) + DATA_NOTE
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
            tok(" The", " train", " leaves", " in", " 15", (" minutes", 6.0), " from", " platform", " 2"),
            tok(" It", " took", " three", (" weeks", 8.0), " and", " two", (" days", 5.0), " to", " arrive"),
            tok(" Wait", " a", " few", (" seconds", 4.0), " before", " retrying", "."),
        ),
        negatives=(
            tok(" The", " minutes", " of", " the", " meeting", " were", " approved", "."),
            tok(" Time", " flies", " when", " you", " are", " busy", "."),
        ),
        reasoning="The marked tokens are minutes, weeks, days and seconds. Each names a unit of "
        "time and follows a number or a quantity word such as 'a few'.",
        explanation="units of time (seconds, days, weeks) counted by a preceding number",
        contrastive_explanation="units of time counted by a preceding number, not other senses "
        "of words like 'minutes' or 'time'",
    ),
    _ExplainShot(
        activating=(
            tok("def", (" load", 7.0), ("_config", 9.0), "(", "path", "):"),
            tok("    ", "def", (" __", 4.0), ("init", 6.0), ("__", 5.0), "(", "self", "):"),
            tok("async", " def", (" fetch", 8.0), "(", "url", "):"),
        ),
        negatives=(
            tok("result", " =", " load", "_config", "(", "path", ")"),
            tok("class", " Loader", ":"),
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
        lines.append(f"Example {i}: {fence(render_highlighted(ex.token_strs, ex.active))}")
        if show_activations:
            lines.append(_activation_line(ex, max_act))
    if negatives:
        lines += ["", _SILENT_HEADER]
        lines += [f"Counter-example {i}: {fence(render_plain(ex.token_strs))}" for i, ex in enumerate(negatives, 1)]
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
    if kind in ("top_tokens", "single_token", "output_side"):
        return f"explain/{kind}"
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
# Answer parsing

_EXPLANATION_LABEL = re.compile(r"explanation\s*:", re.IGNORECASE)


def _clean_line(line: str) -> str:
    line = line.strip()
    line = re.sub(r"^(?:[-*>#]+\s+)+", "", line)  # bullets, quote marks, headings
    while len(line) >= 2 and line[0] in QUOTES and line[-1] in QUOTES:
        line = line[1:-1].strip()
    return line


def parse_explanation(text: str | None, max_chars: int = MAX_EXPLANATION_CHARS) -> Parsed[str]:
    """The explanation from an explainer answer: the first non-empty line after the last
    "Explanation:" label, else the last non-empty line; markdown emphasis, bullets and
    surrounding quotes removed; an overlong line is cut to its first sentence. Empty, overlong,
    word-less or placeholder answers fail."""
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
    if len(explanation) > max_chars:  # a rambling answer: its first sentence, if that is short enough
        explanation = re.split(r"(?<=[.!?])\s+", explanation, maxsplit=1)[0]
    if len(explanation) > max_chars:
        return Parsed(None, f"explanation too long ({len(explanation)} chars > {max_chars})")
    if not re.search(r"[^\W\d_]", explanation):
        return Parsed(None, f"explanation has no words: {explanation!r}")
    if explanation.startswith("<") and explanation.endswith(">") and OPEN not in explanation:
        return Parsed(None, f"placeholder instead of an explanation: {explanation!r}")
    return Parsed(explanation)


def _explainer_version(kind: ExplainerKind, acts: bool, cot: bool) -> str:
    # The few-shot conversation is rendered by the same code as real prompts; hashing it
    # (with a placeholder final turn) captures the template text and the worked examples.
    probe = build_explainer_messages(
        (tok("x", ("y", 1.0)),), (tok("z"),), kind=kind, show_activations=acts, chain_of_thought=cot
    )
    return version(probe)

PROMPT_VERSIONS: dict[str, str] = {
    **{
        explainer_prompt_key(kind, acts, cot): _explainer_version(kind, acts, cot)
        for kind in ("default", "contrastive")
        for acts in (False, True)
        for cot in (False, True)
    },
    "explain/top_tokens": version(_TOP_TOKENS_TEMPLATE, TOP_TOKENS_N),
    "explain/single_token": single_token.PROMPT_VERSION,
    "explain/output_side": output_side.PROMPT_VERSION,
}
