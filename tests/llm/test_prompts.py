
import pytest

from autointerp_assets.llm import prompts as R


def ex(tokens: list[str], acts: list[float]) -> R.Example:
    return R.Example(tuple(tokens), tuple(acts))


# ---------------------------------------------------------------- rendering


def test_adjacent_highlights_merge_into_one_span():
    tokens = ["def", " load", "_config", "(", "path", "):"]
    assert R.render_highlighted(tokens, [0, 1, 1, 0, 0, 0]) == "def <<load_config>>(path):"


def test_separate_runs_give_separate_spans():
    tokens = [" a", " cat", " and", " a", " dog"]
    assert R.render_highlighted(tokens, [0, 1, 0, 0, 1]) == " a <<cat>> and a <<dog>>"


def test_highlight_whitespace_newlines_and_literal_markers():
    # A trailing newline inside a span is escaped, so it is not whitespace any more.
    assert R.render_highlighted(["x", " y", "\n"], [0, 1, 1]) == "x <<y\\n>>"
    # A whitespace-only highlighted token is still visible.
    assert R.render_highlighted(["a", " ", "b"], [0, 1, 0]) == "a<< >>b"
    # A literal bit shift cannot pass for a marker.
    assert R.render_highlighted(["x", " <<", " 2"], [0, 0, 1]) == "x < < <<2>>"
    assert R.render_plain(["a\n", "\tb"]) == "a\\n\\tb"


def test_highlight_length_mismatch():
    with pytest.raises(ValueError):
        R.render_highlighted(["a", "b"], [True])


def test_normalise_acts_0_to_10():
    # max 8: 8 -> 10; 4 -> 5; 1 -> 1.25 -> 1; 0.2 -> 0.25 -> rounds to 0 but active -> 1;
    # 3 -> 3.75 -> 4; 0 stays 0; 2 -> 2.5 -> half up -> 3
    assert R.normalise_acts([8.0, 4.0, 1.0, 0.2, 3.0, 0.0, 2.0], 8.0) == [10, 5, 1, 1, 4, 0, 3]
    assert R.normalise_acts([0.0, 0.0], 0.0) == [0, 0]

