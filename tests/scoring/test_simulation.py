"""Simulation: prompts, expected values over digit logprobs, parsing, Pearson r with its reasons."""

from __future__ import annotations

import math

import pytest

from autointerp_assets.llm.api import ChatRequest, Completion, PromptScore, PromptToken, TokenLogprobs, failed_score
from autointerp_assets.llm.prompts import escape
from autointerp_assets.scoring import simulation
from autointerp_assets.scoring.simulation import Simulated, Window
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
    return Window(tuple(acts), activating, quantile if activating else -1, kind if activating else "random")


def test_metrics_r_overall_by_quantile_and_top_random():
    windows = [win([0, 5, 0]), win([0, 0, 9], quantile=1), win([0, 0, 0], activating=False)]
    simulated = [Simulated((0.0, 4.0, 1.0)), Simulated((0.0, 1.0, 8.0)), Simulated((1.0, 0.0, 0.0))]
    out = simulation.metrics(windows, simulated, n_bins=2)
    true = [0, 5, 0, 0, 0, 9, 0, 0, 0]
    pred = [0, 4, 1, 0, 1, 8, 1, 0, 0]
    assert out["r"] == pytest.approx(simulation.pearson(true, pred)) and out["n"] == 9 and out["reason"] is None
    assert out["r_by_quantile"][0] == pytest.approx(simulation.pearson([0, 5, 0], [0, 4, 1]))
    assert out["r_top_random"] == pytest.approx(simulation.pearson([0, 0, 9, 0, 0, 0], [0, 1, 8, 1, 0, 0]))


def test_metrics_give_a_reason_whenever_r_is_null():
    windows = [win([0, 5]), win([0, 0], activating=False)]
    constant = simulation.metrics(windows, [Simulated((0.0, 0.0)), Simulated((0.0, 0.0))], 1)
    assert constant["r"] is None and "constant (0.00 on 4 tokens)" in constant["reason"]
    failed = simulation.metrics(windows, [Simulated(None, "llm error: x")] * 2, 1)
    assert failed["r"] is None and failed["n_failed"] == 2 and "every simulation failed, e.g. llm error: x" in failed["reason"]
    silent = simulation.metrics([win([0, 0])], [Simulated((1.0, 2.0))], 1)
    assert silent["r"] is None and silent["reason"] == "no token of the held-out windows activates"
    unread = simulation.metrics(windows, [Simulated((None, 3.0)), Simulated((1.0, None))], 1)
    assert unread["n_unread"] == 2 and unread["n"] == 2


@pytest.mark.slow
def test_real_model_simulates_every_token_and_gives_r_or_a_reason():
    """All-at-once simulation with the in-process SmolLM2 on planted triggers: every token is read,
    every latent gets a finite r or a reason, the prompt cost is counted; true vs shuffled is printed
    (the 135M model's signal is weak: see the README's measurements)."""
    from support.planted import TRIGGERS, planted_windows

    from autointerp_assets.llm.local import LocalChatLLM

    llm = LocalChatLLM()
    planted = planted_windows(llm._load()[0], 16, 3)
    names = list(TRIGGERS)
    r = {"true": [], "shuffled": []}
    for k, trigger in enumerate(names):
        ws = planted[trigger]
        windows = [win(w.acts, w.activating, kind="quantile" if w.activating else "random") for w in ws]
        for name, explanation in (("true", TRIGGERS[trigger]), ("shuffled", TRIGGERS[names[(k + 1) % 3]])):
            prompts = simulation.build_prompts(explanation, [w.token_strs for w in ws], all_at_once=True,
                                               windows_per_prompt=6)
            answers = llm.score_prompts([p.request for p in prompts])
            simulated: list[Simulated] = [Simulated(None)] * len(ws)
            for prompt, answer in zip(prompts, answers, strict=True):
                for row, s in zip(prompt.rows, simulation.read(prompt, answer), strict=True):
                    simulated[row] = s
            out = simulation.metrics(windows, simulated, n_bins=1)
            assert out["n_failed"] == 0 and out["n"] + out["n_unread"] == 16 * 6 and out["n_unread"] <= 5
            assert (out["r"] is not None and math.isfinite(out["r"])) or out["reason"]
            r[name].append(out["r"] or 0.0)
    assert llm.usage.prompt_tokens > 0 and llm.usage.failures == 0
    print(f"simulation r true {[round(x, 3) for x in r['true']]} shuffled {[round(x, 3) for x in r['shuffled']]}")
