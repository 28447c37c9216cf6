"""Simulation prompts (after Bills et al. 2023, "Language models can explain neurons in language
models"): the model reads an explanation and writes, for each token, an activation 0-10.

Two renderings of the same few-shot conversation:
- `all_at_once` (raw text, for prompt logprobs): every target token is written as
  `token<TAB>0`; the distribution the model puts on the token after each tab, read from the
  prompt's logprobs, is the prediction. One forward pass simulates every window of the prompt,
  and the model never sees its own earlier guesses (Bills et al.'s all-at-once). Bills et al.
  write `unknown` as the placeholder; with it the in-process SmolLM2-135M had no digit among its
  top 10 alternatives at 30-45 % of the positions (left unread), with `0` at none. A constant
  placeholder carries no information either way, and Pearson's r ignores the shift it adds.
- `chat` (for servers without prompt logprobs): the model writes `token<TAB>N` lines, parsed in
  order; where the answer's logprobs exist, N is the expected value over the digit alternatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..llm.api import Message
from ..llm.prompts import escape, version

PLACEHOLDER = "0"  # what the prompt shows as each target token's activation (see the module doc)
MAX_ACTIVATION = 10
_INTRO = (
    "We are studying latents (features) of a neural network. Each latent looks for one particular thing "
    "in a short text. Read the explanation of what a latent looks for, then predict how strongly it "
    "fires on each token.\n\nThe format is token<tab>activation, one token per line. Activations go from "
    "0 to 10; most are 0. A text starts with <start> and ends with <end>."
)


@dataclass(frozen=True)
class _Shot:
    explanation: str
    tokens: tuple[str, ...]
    acts: tuple[int, ...]


# One explanation that quotes its token and one that names a class: a small model learns the
# literal mapping from the first, a large one the reading of descriptions from both.
_SHOTS = (
    _Shot('the word "apples"', (" We", " bought", " two", " apples", " and", " a", " ripe", " mango", " and", " more",
                                " apples", "."), (0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 9, 0)),
    _Shot("a closing bracket that ends a function call in code", ("print", "(", "len", "(", "items", ")", " +", " 1",
                                                                 ")", "\n"), (0, 0, 0, 0, 0, 7, 0, 0, 10, 0)),
)


def _line(token: str, value: str) -> str:
    return f"{escape(token)}\t{value}\n"


def _block(tokens: Sequence[str], values: Sequence[str]) -> str:
    return "<start>\n" + "".join(_line(t, v) for t, v in zip(tokens, values, strict=True)) + "<end>\n"


def _header(index: int, explanation: str) -> str:
    return f"\nLatent {index}\nExplanation: {explanation}\nActivations:\n"


def all_at_once_prompt(explanation: str, windows: Sequence[Sequence[str]]) -> tuple[str, list[list[int]]]:
    """The raw-text prompt, and for each window the character offset of each token's placeholder
    (where the model's prediction for that token is read)."""
    text = _INTRO + "\n"
    for i, shot in enumerate(_SHOTS, 1):
        text += _header(i, shot.explanation) + _block(shot.tokens, [str(a) for a in shot.acts])
    text += _header(len(_SHOTS) + 1, explanation)
    offsets: list[list[int]] = []
    for tokens in windows:
        text += "<start>\n"
        here = []
        for token in tokens:
            text += f"{escape(token)}\t"
            here.append(len(text))
            text += f"{PLACEHOLDER}\n"
        text += "<end>\n"
        offsets.append(here)
    return text, offsets


def chat_messages(explanation: str, tokens: Sequence[str]) -> tuple[Message, ...]:
    """System instructions, the few-shots as user/assistant turns, then the window to simulate."""

    def ask(expl: str, toks: Sequence[str]) -> str:
        return f"Explanation: {expl}\nTokens:\n" + _block(toks, ["?"] * len(toks))

    messages: list[Message] = [{"role": "system", "content": _INTRO + " Answer with the lines only."}]
    for shot in _SHOTS:
        messages += [{"role": "user", "content": ask(shot.explanation, shot.tokens)},
                     {"role": "assistant", "content": _block(shot.tokens, [str(a) for a in shot.acts])}]
    messages.append({"role": "user", "content": ask(explanation, tokens)})
    return tuple(messages)


def digit_value(token: str) -> int | None:
    """The activation a token names, if it is an integer 0..10 (surrounding whitespace ignored)."""
    text = token.strip()
    return int(text) if text.isdigit() and int(text) <= MAX_ACTIVATION else None


PROMPT_VERSIONS = {
    "simulation/all_at_once": version(all_at_once_prompt("x", [("a", "b")])[0]),
    "simulation/chat": version(chat_messages("x", ("a", "b"))),
}
