"""Surprisal: the real SmolLM2 conditioned on an explanation gains more on windows holding what it
names; failures are counted; tokens are matched by offset."""

from __future__ import annotations

import numpy as np
import pytest
from support.planted import TRIGGERS, planted_windows

from autointerp_assets.llm.api import PromptScore, PromptToken, failed_score
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.local import LocalChatLLM
from autointerp_assets.scoring import metrics, surprisal
from autointerp_assets.store.store import ArtifactStore

WINDOW, PER_CLASS = 20, 4


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> LocalChatLLM:
    return LocalChatLLM(cache=ResponseCache(ArtifactStore(str(tmp_path_factory.mktemp("cache")))))


@pytest.fixture(scope="module")
def planted(llm) -> dict[str, tuple[list[str], list[int]]]:
    """trigger -> (window texts, labels) cut from real stdlib sources."""
    windows = planted_windows(llm._load()[0], WINDOW, PER_CLASS)
    return {t: ([w.text for w in ws], [int(w.activating) for w in ws]) for t, ws in windows.items()}


@pytest.mark.slow
def test_true_explanations_beat_shuffled_ones_on_planted_triggers(llm, planted):
    names = list(TRIGGERS)
    true_auc, shuffled_auc = [], []
    for k, trigger in enumerate(names):
        texts, labels = planted[trigger]
        for explanation, dest in ((TRIGGERS[trigger], true_auc), (TRIGGERS[names[(k + 1) % len(names)]], shuffled_auc)):
            scores = surprisal.score_windows(llm, explanation, texts)
            assert all(s.value is not None and s.failure is None for s in scores)
            dest.append(metrics.auroc(labels, [s.value for s in scores]))
    print(f"surprisal AUROC true {np.round(true_auc, 2)} shuffled {np.round(shuffled_auc, 2)}")
    assert np.mean(true_auc) >= 0.8, true_auc
    assert np.mean(true_auc) - np.mean(shuffled_auc) >= 0.3, (true_auc, shuffled_auc)
    # The null-explanation request of a window is the same for every explanation: answered once.
    n_windows = sum(len(texts) for texts, _ in planted.values())
    assert llm.usage.requests == n_windows * 3 and llm.usage.cache_hits == n_windows


def tokens(text: str, start: int) -> tuple[PromptToken, ...]:
    words = text[start:].split(" ")
    out, offset = [], start
    for w in words:
        out.append(PromptToken(w, offset, -1.0))
        offset += len(w) + 1
    return tuple(out)


def test_requests_pair_each_window_with_the_null_explanation():
    sent = surprisal.requests("numbers.", ["a b", "c d"])
    assert [r.prompt.endswith(t) for r, t in zip(sent, ["a b", "a b", "c d", "c d"], strict=True)] == [True] * 4
    assert "contains numbers.\n" in sent[0].prompt and surprisal.NULL_EXPLANATION in sent[1].prompt
    assert all(r.prompt[r.score_from :] in ("a b", "c d") for r in sent)


def test_gains_are_matched_by_offset_and_aggregated():
    sent = surprisal.requests("x", ["one two three four"])
    with_expl, null = sent
    a = tokens(with_expl.prompt, with_expl.score_from)
    b = tokens(null.prompt, null.score_from)
    gains = [3.0, 0.5, 0.0, -1.0]
    a = tuple(PromptToken(t.text, t.offset, -5.0 + g) for t, g in zip(a, gains, strict=True))
    b = tuple(PromptToken(t.text, t.offset, -5.0) for t in b[:3])  # "four" missing on the null side: left out
    scores = [PromptScore(a), PromptScore(b)]
    (top,) = surprisal.window_scores(sent, scores)
    (mean,) = surprisal.window_scores(sent, scores, aggregate="mean")
    assert top.value == pytest.approx((3.0 + 0.5 + 0.0) / 3) and mean.value == pytest.approx(3.5 / 3)


def test_a_failed_request_fails_its_window_with_the_reason():
    sent = surprisal.requests("x", ["a b", "c d"])
    ok = PromptScore(tokens(sent[2].prompt, sent[2].score_from))
    scores = [failed_score("timeout", "no answer"), PromptScore(()), ok, PromptScore(tokens(sent[3].prompt, sent[3].score_from))]
    first, second = surprisal.window_scores(sent, scores)
    assert first.value is None and first.failure == "llm error: timeout: no answer"
    assert second.value == pytest.approx(0.0) and second.failure is None
