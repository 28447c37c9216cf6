"""Simulation: prompts, expected values over digit logprobs, parsing, Pearson r with its reasons, and the
registered scorer on the real SmolLM2."""

from __future__ import annotations

import math

import pytest

from autointerp_assets.config import SamplingConfig, ScorerConfig
from autointerp_assets.llm.api import ChatRequest, Completion, PromptScore, PromptToken, TokenLogprobs, failed_score
from autointerp_assets.llm.prompts import escape
from autointerp_assets.scoring import metrics, simulation
from autointerp_assets.scoring.base import ScoringContext, Task, Window, WindowScore
from autointerp_assets.scoring.simulation_prompts import PLACEHOLDER, all_at_once_prompt, chat_messages

WINDOWS = [(" def", " load", "(", "path", "):"), (" x", " =", " 1", "\n", "\t")]


def test_all_at_once_prompt_marks_where_each_prediction_is_read():
    text, offsets = all_at_once_prompt("function names", WINDOWS)
    assert [len(o) for o in offsets] == [5, 5]
    for tokens, where in zip(WINDOWS, offsets, strict=True):
        for token, offset in zip(tokens, where, strict=True):
            assert text[offset : offset + len(PLACEHOLDER)] == PLACEHOLDER
            line = text[:offset].rsplit("\n", 1)[-1]
            assert line == escape(token) + "\t"  # escaped: one line per token
    assert "Explanation: function names\n" in text and text.count("<start>\n") == 4  # two few-shots + two windows
    assert "\\n\t" + PLACEHOLDER in text and "\\t\t" + PLACEHOLDER in text


def test_build_prompts_groups_windows_and_keeps_order():
    prompts = simulation.build_prompts("x", WINDOWS * 3, all_at_once=True, windows_per_prompt=4)
    assert [p.rows for p in prompts] == [(0, 1, 2, 3), (4, 5)]
    assert all(p.request.score_from == p.offsets[0][0] for p in prompts)
    chat = simulation.build_prompts("x", WINDOWS, all_at_once=False)
    assert [p.rows for p in chat] == [(0,), (1,)] and isinstance(chat[0].request, ChatRequest)
    assert chat[0].request.messages == chat_messages("x", WINDOWS[0])


def test_expected_value_renormalises_over_digits():
    top = {"0": math.log(0.5), "unknown": math.log(0.3), "10": math.log(0.1), " 5": math.log(0.1)}
    assert simulation.expected_value(top) == pytest.approx((0 * 0.5 + 10 * 0.1 + 5 * 0.1) / 0.7)
    assert simulation.expected_value({"unknown": -0.1, "11": -3.0}) is None
    assert simulation.expected_value(None) is None


def test_read_all_at_once_takes_each_tokens_position():
    prompt = simulation.build_prompts("x", WINDOWS[:1], all_at_once=True)[0]
    offsets = prompt.offsets[0]
    tokens = tuple(PromptToken(PLACEHOLDER, o, -1.0, {"0": math.log(0.9), "9": math.log(0.1)}) for o in offsets[1:])
    (window,) = simulation.read(prompt, PromptScore(tokens))
    assert window.values[0] is None  # no prediction read at the first token's position
    assert window.values[1:] == pytest.approx((0.9,) * 4)
    (failed,) = simulation.read(prompt, failed_score("server", "boom"))
    assert failed.values is None and failed.failure == "llm error: server: boom"


def test_read_chat_parses_lines_and_prefers_digit_logprobs():
    prompt = simulation.build_prompts("x", [(" a", " b")], all_at_once=False)[0]
    answer = Completion(" a\t0\n b\t7\n")
    (window,) = simulation.read(prompt, answer)
    assert window.values == (0.0, 7.0)
    steps = (TokenLogprobs(" a", {}), TokenLogprobs("\t", {}), TokenLogprobs("0", {"0": math.log(0.8), "2": math.log(0.2)}),
             TokenLogprobs("\n", {}), TokenLogprobs(" b", {}), TokenLogprobs("\t", {}), TokenLogprobs("7", {"7": 0.0}),
             TokenLogprobs("\n", {}))
    (window,) = simulation.read(prompt, Completion(" a\t0\n b\t7\n", logprobs=steps))
    assert window.values == pytest.approx((0.4, 7.0))
    (short,) = simulation.read(prompt, Completion(" a\t0\n"))
    assert short.values is None and "1 token lines" in short.failure


def win(acts, activating=True, quantile=0, kind="quantile") -> Window:
    return Window(activating, kind if activating else "random", quantile if activating else -1,
                  tuple("t" for _ in acts), tuple(acts))


def simulated(window: Window, values) -> WindowScore:
    return WindowScore(int(window.activating), window, simulated=None if values is None else tuple(values))


R_METRICS = ("r", "r_top_random", "r_by_quantile")


def test_metrics_r_overall_by_quantile_and_top_random():
    windows = [win([0, 5, 0]), win([0, 0, 9], quantile=1), win([0, 0, 0], activating=False)]
    answers = [simulated(w, v) for w, v in zip(windows, [(0.0, 4.0, 1.0), (0.0, 1.0, 8.0), (1.0, 0.0, 0.0)], strict=True)]
    out = metrics.summarise(R_METRICS, answers, metrics.Settings(n_bins=2, min_auroc_n=2))
    true = [0, 5, 0, 0, 0, 9, 0, 0, 0]
    pred = [0, 4, 1, 0, 1, 8, 1, 0, 0]
    assert out["r"].value == pytest.approx(metrics.pearson(true, pred)) and out["r"].n == 9
    assert out["r_by_quantile"].value[0] == pytest.approx(metrics.pearson([0, 5, 0], [0, 4, 1]))
    assert out["r_by_quantile"].n == [3, 3]
    assert out["r_top_random"].value == pytest.approx(metrics.pearson([0, 0, 9, 0, 0, 0], [0, 1, 8, 1, 0, 0]))


def test_metrics_give_a_reason_whenever_r_is_null():
    windows = [win([0, 5]), win([0, 0], activating=False)]
    settings = metrics.Settings(n_bins=1, min_auroc_n=2)
    constant = metrics.summarise(R_METRICS, [simulated(w, (0.0, 0.0)) for w in windows], settings)["r"]
    assert constant.value is None and "constant (0.00 on 4 tokens)" in constant.why_null
    failed = [WindowScore(int(w.activating), w, failure="llm error: x") for w in windows]
    assert metrics.summarise(R_METRICS, failed, settings)["r"].why_null == "no window was simulated"
    silent = metrics.summarise(R_METRICS, [simulated(win([0, 0]), (1.0, 2.0))], settings)["r"]
    assert silent.value is None and silent.why_null == "no token of these windows activates"
    unread = metrics.summarise(R_METRICS, [simulated(windows[0], (None, 3.0)), simulated(windows[1], (1.0, None))],
                               settings)["r"]
    assert unread.n == 2  # unread tokens are left out of r's n


@pytest.mark.slow
def test_registered_scorer_simulates_every_token_on_the_real_model():
    """All-at-once simulation with the in-process SmolLM2 on planted triggers, through the registered
    scorer: every token is read or counted unread, every latent gets a finite r or a reason, the
    prompt cost is counted; true vs shuffled is printed (the 135M model's signal is weak: README)."""
    from support.planted import TRIGGERS, planted_windows

    from autointerp_assets.llm.local import LocalChatLLM

    llm = LocalChatLLM()
    planted = planted_windows(llm._load()[0], 16, 3)
    names = list(TRIGGERS)
    tasks = []
    for k, trigger in enumerate(names):
        windows = tuple(Window(w.activating, "quantile" if w.activating else "random", 0 if w.activating else -1,
                               w.token_strs, w.acts) for w in planted[trigger])
        tasks += [Task(k, TRIGGERS[trigger], windows, (k,)),
                  Task(k, TRIGGERS[names[(k + 1) % len(names)]], windows, (k,), run="chance")]
    ctx = ScoringContext(ScorerConfig(kinds=["simulation"], examples_per_prompt=6), SamplingConfig(), llm, "single")
    results = simulation.SCORER.score(tasks, ctx)
    settings = metrics.Settings(n_bins=1, min_auroc_n=2)
    r = {False: [], True: []}
    for task, answers in zip(tasks, results, strict=True):
        assert all(a.failure is None and len(a.simulated) == 16 for a in answers)
        out = metrics.summarise(R_METRICS, answers, settings)["r"]
        assert out.n >= 16 * 6 - 5  # a few positions may have no digit among the alternatives
        assert (out.value is not None and math.isfinite(out.value)) or out.why_null
        r[task.run == "chance"].append(out.value or 0.0)
    assert llm.usage.prompt_tokens > 0 and llm.usage.failures == 0
    print(f"simulation r true {[round(x, 3) for x in r[False]]} shuffled {[round(x, 3) for x in r[True]]}")
