import math

import pytest

from autointerp_assets.llm.api import TokenLogprobs
from autointerp_assets.scoring import prompts as P

# ---------------------------------------------------------------- scorer prompts


def test_detection_prompt_numbers_plain_windows():
    msgs = P.build_detection_messages("cats", [[" the", " cat"], [" a", " dog"]])
    final = msgs[-1]["content"]
    assert final.startswith("Description: cats")
    assert "Example 1:  the cat\nExample 2:  a dog" in final
    assert "<<" not in final
    assert "exactly 2 values" in final
    assert msgs[2]["role"] == "assistant"
    assert P.parse_binary_answers(msgs[2]["content"], 5).ok  # the worked answer parses


def test_fuzzing_prompt_marks_tokens():
    final = P.build_fuzzing_messages("cats", [([" the", " cat"], [False, True]), ([" a", " dog"], [True, False])])[
        -1
    ]["content"]
    assert "Example 1:  the <<cat>>" in final
    assert "Example 2:  <<a>> dog" in final



# ---------------------------------------------------------------- answer-list parsing


@pytest.mark.parametrize(
    "answer",
    [
        "[1, 0, 1]",
        "[1,0,1]",
        "1 0 1",
        "Answer: 1, 0, 1.",
        "['yes', 'no', 'yes']",
        "Example 1: yes\nExample 2: no\nExample 3: yes",
        "1. 1\n2. 0\n3. 1",
        "**Example 1**: True, Example 2: False, Example 3: True",
        "Example 1 fits, example 2 does not.\nFinal: [1, 0, 1]",
        "[0, 0, 0] on second thought [1, 0, 1]",
    ],
)


def test_parse_binary_answers_accepts(answer):
    parsed = P.parse_binary_answers(answer, 3)
    assert parsed.ok, parsed.failure
    assert parsed.value == [1, 0, 1]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty answer"),
        (None, "empty answer"),
        ("[1, 0]", "expected 3 answers, got 2"),
        ("1 0 1 1", "expected 3 answers, got 4"),
        ("Example 1: yes\nExample 2: no", "expected answers for examples 1..3"),
        ("Example 1: yes\nExample 1: no\nExample 2: no", "conflicting"),
        ("I am not sure about these.", "unparseable"),
        ("[maybe, 1, 0]", "unparseable"),
    ],
)


def test_parse_binary_answers_rejects(answer, reason):
    parsed = P.parse_binary_answers(answer, 3)
    assert not parsed.ok and parsed.value is None
    assert reason in parsed.failure


# ---------------------------------------------------------------- logprobs


def test_answer_probabilities_from_top_logprobs():
    logprobs = [
        TokenLogprobs("[", {"[": 0.0}),
        TokenLogprobs("1", {"1": math.log(0.6), "0": math.log(0.2), " 1": math.log(0.1)}),
        TokenLogprobs(",", {",": 0.0}),
        TokenLogprobs(" 0", {" 0": math.log(0.5), " 1": math.log(0.3), "x": math.log(0.2)}),
        TokenLogprobs("]", {"]": 0.0}),
    ]
    probs = P.answer_probabilities(logprobs, [1, 0])
    # first: P(1) = (0.6 + 0.1) / (0.6 + 0.1 + 0.2) = 0.7 / 0.9; second: 0.3 / (0.3 + 0.5) = 0.375
    assert probs == pytest.approx([0.7 / 0.9, 0.375])


def test_answer_probabilities_need_aligned_digits():
    one = TokenLogprobs("1", {"1": 0.0})
    assert P.answer_probabilities(None, [1]) is None
    assert P.answer_probabilities([one], [1, 1]) is None  # fewer digit tokens than answers
    assert P.answer_probabilities([one], [0]) is None  # digit disagrees with the parsed answer
    # the generated token missing from its own top list: fall back to the token itself
    assert P.answer_probabilities([TokenLogprobs("1", {"x": 0.0})], [1]) == [1.0]

