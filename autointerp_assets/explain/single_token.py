"""Single-token explainer: each example shows exactly one highlighted token, the one where the
latent fires most strongly (its peak), instead of every active token.

Why: with all active tokens marked, a latent that fires weakly on the neighbours of its trigger
looks like a span detector; marking only the peak asks the explainer what the strongest token
has in common across examples. Windows are rendered by `llm.prompts`, as for every explainer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..llm.api import Message
from ..llm.prompts import CLOSE, OPEN, Example, render_highlighted, tok, version

_INTRO = (
    "You are helping to interpret a neural network. A language model has an internal latent (a learned "
    "feature) and you will see short text excerpts in which it is active. In each excerpt exactly one token "
    "is marked like {open}this{close}: the token where the latent fires most strongly."
)
_TASK = (
    "\n\nFind what the marked tokens have in common, taking the words around them into account, and describe "
    "it as one short phrase. Be concrete. Do not mention the markers and write at most one sentence."
    "\n\nAnswer with one line:\nExplanation: <your description>"
)
_SHOTS = (
    ((tok(" We", " met", " on", (" Monday", 9.0), " morning"), tok(" Shops", " close", " early", " on", (" Sundays", 7.0)),
      tok(" The", " report", " is", " due", (" Friday", 8.0), ".")),
     "days of the week"),
    ((tok("x", " =", " [", "1", ",", " 2", (",", 6.0), " 3", "]"), tok("f", "(", "a", (",", 8.0), " b", ")"),
      tok("{", "'k'", ":", " 1", (",", 5.0), " 'v'", ":", " 2", "}")),
     "commas that separate items in code"),
)


def peak_only(example: Example) -> Example:
    """The example with only its first maximum kept active."""
    peak = max(range(len(example.acts)), key=lambda i: (example.acts[i], -i))
    return Example(example.token_strs, tuple(a if i == peak else 0.0 for i, a in enumerate(example.acts)))


def _user(examples: Sequence[Example]) -> str:
    lines = ["Excerpts where the latent fires:"]
    for i, ex in enumerate(examples, 1):
        marked = peak_only(ex)
        lines.append(f"Example {i}: {render_highlighted(marked.token_strs, marked.active)}")
    return "\n".join(lines)


def build_messages(activating: Sequence[Example]) -> tuple[Message, ...]:
    if not activating:
        raise ValueError("an explainer prompt needs at least one activating example")
    messages: list[Message] = [{"role": "system", "content": _INTRO.format(open=OPEN, close=CLOSE) + _TASK}]
    for examples, answer in _SHOTS:
        messages += [{"role": "user", "content": _user(examples)},
                     {"role": "assistant", "content": f"Explanation: {answer}"}]
    messages.append({"role": "user", "content": _user(activating)})
    return tuple(messages)


PROMPT_VERSION = version(build_messages((tok("x", ("y", 1.0)),)))
