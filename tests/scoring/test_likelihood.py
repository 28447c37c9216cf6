"""The LLM classifiers' likelihood mode: each window is shown with the question what it contains,
and its score is the log-probability of the explanation as the answer. Prompt structure, scores
and failures with a scripted LLM; true against shuffled explanations with the real SmolLM2."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from support.planted import TRIGGERS, planted_windows

from autointerp_assets.config import SamplingConfig, ScorerConfig
from autointerp_assets.llm.api import PromptScore, PromptToken, ScoreRequest, Usage, failed_score
from autointerp_assets.llm.cache import ResponseCache
from autointerp_assets.llm.local import LocalChatLLM
from autointerp_assets.scoring import detection, fuzzing, metrics
from autointerp_assets.scoring.base import ScoringContext, Task, Window
from autointerp_assets.scoring.prompts import likelihood_request
from autointerp_assets.store.store import ArtifactStore


def test_the_explanation_completes_the_answer_and_only_it_is_scored():
    r = likelihood_request("detection", "The word cat.", [" a", " cat"], None)
    assert r.prompt == "Text: <excerpt> a cat</excerpt>\nWhat does this text contain?\n\nThis text contains the word cat."
    assert r.prompt[r.score_from :] == " the word cat."
    assert likelihood_request("detection", "DNA bases", ["x"], None).prompt.endswith("contains DNA bases.")
    marked = likelihood_request("fuzzing", "cats", [" a", " cat"], [False, True])
    assert "<excerpt> a <<cat>></excerpt>" in marked.prompt and marked.prompt.endswith("The marked tokens are cats.")


def test_the_backends_chat_template_wraps_the_question_where_it_knows_one():
    r = likelihood_request("detection", "cats", [" a", " cat"], None, chat=lambda user: f"<user>{user}</user>\n")
    assert r.prompt == "<user>Text: <excerpt> a cat</excerpt>\nWhat does this text contain?</user>\nThis text contains cats."
    assert r.prompt[r.score_from :] == " cats."
    assert likelihood_request("detection", "cats", [" a"], None, chat=lambda user: None).prompt.startswith("Text: ")


def test_corpus_text_cannot_leave_its_fence():
    r = likelihood_request("detection", "cats", [" x</excerpt>\nThis text contains", " y"], None)
    assert r.prompt.count("</excerpt>") == 1 and r.prompt.count("\n") == 3
    assert r.prompt[r.score_from :] == " cats."


class Scripted:
    """A ChatLLM whose prompt scores are scripted: every scored token gets logprob -1 when the
    window holds " cat", else -3; windows holding "fail" fail."""

    model_name, supports_logprobs, supports_prompt_logprobs = "scripted", True, True

    def __init__(self) -> None:
        self.usage = Usage()
        self.sent: list[ScoreRequest] = []

    def chat_prompt(self, user: str) -> None:
        return None

    def complete_many(self, requests):  # never called in likelihood mode
        raise AssertionError("likelihood mode generates nothing")

    def score_prompts(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        self.sent += requests
        out = []
        for r in requests:
            window = r.prompt[: r.score_from]
            if "fail" in window:
                out.append(failed_score("server", "boom"))
                continue
            logprob = -1.0 if " cat" in window else -3.0
            words = r.prompt[r.score_from :].split(" ")[1:]
            out.append(PromptScore(tuple(PromptToken(" " + w, 0, logprob) for w in words)))
        return out


def window(text: str, activating: bool) -> Window:
    strs = tuple(" " + w for w in text.split())
    return Window(activating, "quantile" if activating else "random", 0 if activating else -1, strs,
                  tuple(1.0 if activating and s == " cat" else 0.0 for s in strs))


def test_scores_are_the_explanations_log_probability_and_failures_are_counted():
    windows = (window("a cat sat", True), window("the cat ran", True), window("a dog sat", False),
               window("it will fail", False), window("no pets", False))
    llm = Scripted()
    ctx = ScoringContext(ScorerConfig(min_auroc_n=2), SamplingConfig(), llm, "likelihood")
    (scores,) = detection.SCORER.score([Task(0, "the word cat", windows, (0,))], ctx)
    assert len(llm.sent) == len(windows)
    assert [s.score for s in scores] == [-3.0, -3.0, -9.0, None, -9.0]  # 3 tokens: "the word cat."
    assert scores[3].failure == "llm error: server: boom" and all(s.pred is None for s in scores)
    summary = metrics.summarise(detection.SCORER.metrics, scores, metrics.Settings(n_bins=1, min_auroc_n=2))
    assert summary["auroc"].value == 1.0 and summary["auroc"].n == 4
    assert summary["balanced_accuracy"].value is None and summary["balanced_accuracy"].why_null == metrics.NO_DECISIONS


def test_fuzzing_scores_one_request_per_sample():
    windows = (window("a cat sat", True), window("the cat ran", True), window("a dog sat", False))
    llm = Scripted()
    ctx = ScoringContext(ScorerConfig(), SamplingConfig(), llm, "likelihood")
    (scores,) = fuzzing.SCORER.score([Task(0, "the word cat", windows, (0,))], ctx)
    assert len(llm.sent) == len(scores) == len(windows)
    assert all("<<" in r.prompt and r.prompt[r.score_from :] == " the word cat." for r in llm.sent)


def test_local_backend_defaults_to_likelihood_and_remote_to_lists():
    assert ScorerConfig().mode("local") == "likelihood" and ScorerConfig().mode("openai") == "list"


@pytest.mark.slow
def test_true_explanations_beat_shuffled_ones_with_the_shipped_model(tmp_path):
    """Detection in likelihood mode with the in-process SmolLM2 on planted Python keywords."""
    llm = LocalChatLLM(cache=ResponseCache(ArtifactStore(str(tmp_path))))
    planted = planted_windows(llm._load()[0], 20, 4)
    ctx = ScoringContext(ScorerConfig(), SamplingConfig(), llm, "likelihood")
    names = list(TRIGGERS)
    true_auc, shuffled_auc = [], []
    for k, trigger in enumerate(names):
        windows = tuple(Window(w.activating, "quantile" if w.activating else "random", 0 if w.activating else -1,
                               w.token_strs, w.acts) for w in planted[trigger])
        other = TRIGGERS[names[(k + 1) % len(names)]]
        true, shuffled = detection.SCORER.score([Task(0, TRIGGERS[trigger], windows, (k,)),
                                                 Task(0, other, windows, (k,))], ctx)
        for scores, dest in ((true, true_auc), (shuffled, shuffled_auc)):
            assert all(s.failure is None for s in scores)
            dest.append(metrics.auroc([s.label for s in scores], [s.score for s in scores]))
    print(f"likelihood AUROC true {np.round(true_auc, 2)} shuffled {np.round(shuffled_auc, 2)}")
    assert np.mean(true_auc) - np.mean(shuffled_auc) >= 0.3, (true_auc, shuffled_auc)
