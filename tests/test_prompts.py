import math
import re

import pytest

from autointerp_assets import prompts as P
from autointerp_assets.llm_api import TokenLogprobs


def ex(tokens: list[str], acts: list[float]) -> P.Example:
    return P.Example(tuple(tokens), tuple(acts))


# ---------------------------------------------------------------- rendering


def test_adjacent_highlights_merge_into_one_span():
    tokens = ["def", " load", "_config", "(", "path", "):"]
    assert P.render_highlighted(tokens, [0, 1, 1, 0, 0, 0]) == "def <<load_config>>(path):"


def test_separate_runs_give_separate_spans():
    tokens = [" a", " cat", " and", " a", " dog"]
    assert P.render_highlighted(tokens, [0, 1, 0, 0, 1]) == " a <<cat>> and a <<dog>>"


def test_highlight_whitespace_newlines_and_literal_markers():
    # A trailing newline inside a span is escaped, so it is not whitespace any more.
    assert P.render_highlighted(["x", " y", "\n"], [0, 1, 1]) == "x <<y\\n>>"
    # A whitespace-only highlighted token is still visible.
    assert P.render_highlighted(["a", " ", "b"], [0, 1, 0]) == "a<< >>b"
    # A literal bit shift cannot pass for a marker.
    assert P.render_highlighted(["x", " <<", " 2"], [0, 0, 1]) == "x < < <<2>>"
    assert P.render_plain(["a\n", "\tb"]) == "a\\n\\tb"


def test_highlight_length_mismatch():
    with pytest.raises(ValueError):
        P.render_highlighted(["a", "b"], [True])


def test_normalise_acts_0_to_10():
    # max 8: 8 -> 10; 4 -> 5; 1 -> 1.25 -> 1; 0.2 -> 0.25 -> rounds to 0 but active -> 1;
    # 3 -> 3.75 -> 4; 0 stays 0; 2 -> 2.5 -> half up -> 3
    assert P.normalise_acts([8.0, 4.0, 1.0, 0.2, 3.0, 0.0, 2.0], 8.0) == [10, 5, 1, 1, 4, 0, 3]
    assert P.normalise_acts([0.0, 0.0], 0.0) == [0, 0]


# ---------------------------------------------------------------- explainer prompts

ACT = [ex([" the", " cat", " sat"], [0.0, 4.0, 2.0]), ex([" my", " cat"], [0.0, 1.0])]
NEG = [ex([" a", " dog", " ran"], [0.0, 0.0, 0.0])]


def test_default_prompt_structure_and_few_shots():
    msgs = P.build_explainer_messages(ACT, NEG)
    roles = [m["role"] for m in msgs]
    # system, 2 worked examples (user + assistant each), then the latent's examples
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    final = msgs[-1]["content"]
    assert "Example 1:  the <<cat sat>>" in final
    assert "Example 2:  my <<cat>>" in final
    assert "dog" not in final  # the default explainer never shows negatives
    assert "Activations" not in final
    assert all(m["content"].startswith("Explanation: ") for m in msgs if m["role"] == "assistant")


def test_activation_values_listed_per_example():
    final = P.build_explainer_messages(ACT, show_activations=True)[-1]["content"]
    # shared scale, max act 4: cat 4 -> 10, sat 2 -> 5, second cat 1 -> 2.5 -> 3
    assert 'Activations: " cat" 10, " sat" 5' in final
    assert 'Activations: " cat" 3' in final
    assert "activation strength" in P.build_explainer_messages(ACT, show_activations=True)[0]["content"]


def test_contrastive_includes_negatives():
    msgs = P.build_explainer_messages(ACT, NEG, kind="contrastive")
    assert "Counter-example 1:  a dog ran" in msgs[-1]["content"]
    # the worked examples are contrastive too
    assert all("Counter-example" in m["content"] for m in msgs[1:-1:2])


def test_chain_of_thought_changes_instructions_and_shots():
    plain = P.build_explainer_messages(ACT)
    cot = P.build_explainer_messages(ACT, chain_of_thought=True)
    assert plain[0]["content"] != cot[0]["content"]
    assert "reason" in cot[0]["content"]
    # worked answers reason first, then end with the labelled line
    for m in cot[2:-1:2]:
        *reasoning, last = m["content"].splitlines()
        assert reasoning and last.startswith("Explanation: ")


def test_explainer_needs_an_example():
    with pytest.raises(ValueError):
        P.build_explainer_messages([])


def test_prompt_versions_are_short_hex_and_distinct():
    assert P.explainer_prompt_key("default", True, True) == "explain/default+acts+cot"
    assert P.explainer_prompt_key("top_tokens", True) == "explain/top_tokens"
    assert len(P.PROMPT_VERSIONS) == 2 * 4 + 3
    for key, version in P.PROMPT_VERSIONS.items():
        assert re.fullmatch(r"[0-9a-f]{12}", version), key
    assert len(set(P.PROMPT_VERSIONS.values())) == len(P.PROMPT_VERSIONS)


def test_top_tokens_weighted_by_activation():
    examples = [
        ex([" def", " f", "("], [3.0, 0.0, 1.0]),
        ex([" class", " def", "("], [2.5, 1.0, 1.0]),
        ex([" x"], [0.0]),
    ]
    # weights: " def" 3 + 1 = 4, " class" 2.5, "(" 1 + 1 = 2
    assert P.top_tokens_explanation(examples) == 'tokens: " def", " class", "("'
    assert P.top_tokens_explanation(examples, n=1) == 'tokens: " def"'
    assert P.top_tokens_explanation([ex([" x"], [0.0])]) is None


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


# ---------------------------------------------------------------- explanation parsing


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Explanation: the word cat", "the word cat"),
        ('The marked tokens are animals.\nExplanation: **"names of pets"**', "names of pets"),
        ("explanation:\n\n  - `def` keywords  ", "`def` keywords"),  # inner code quotes kept
        ("Explanation: `the def keyword`", "the def keyword"),
        ("Explanation: a\nExplanation: the final one", "the final one"),
        ("Some thoughts.\n\nnumbers after a dollar sign\n", "numbers after a dollar sign"),
        ("Explanation: -ing suffixes", "-ing suffixes"),
    ],
)
def test_parse_explanation_accepts(answer, expected):
    parsed = P.parse_explanation(answer)
    assert parsed.ok and parsed.value == expected


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "empty answer"),
        ("   \n", "empty answer"),
        ("Explanation:   ", "empty explanation"),
        ("Explanation: " + "word " * 100, "too long"),
        ("Explanation: 1234 !!", "no words"),
        ("Explanation: <your description>", "placeholder"),
    ],
)
def test_parse_explanation_rejects(answer, reason):
    parsed = P.parse_explanation(answer)
    assert not parsed.ok and parsed.value is None
    assert reason in parsed.failure


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
