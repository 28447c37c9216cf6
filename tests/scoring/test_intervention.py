"""Intervention: steering on the real SmolLM2 (calibrated strength, steered continuations), and the
explanation's log-probability deltas that separate a latent's continuations from other latents'."""

from __future__ import annotations

import pytest
import torch

from autointerp_assets.coders import TopKSAE
from autointerp_assets.llm.api import PromptScore, PromptToken, failed_score
from autointerp_assets.llm.local import LocalChatLLM
from autointerp_assets.scoring import intervention, metrics
from autointerp_assets.scoring.intervention import Continuation, SteeringConfig


def answer(logprob: float) -> PromptScore:
    return PromptScore((PromptToken("x", 0, logprob),))


def test_deltas_subtract_the_clean_continuation_of_the_same_prompt():
    conts = [Continuation(None, 0.0, 0, "p0"), Continuation(None, 0.0, 1, "p1"),
             Continuation(3, 1.0, 0, "a"), Continuation(3, 1.0, 1, "b"),
             Continuation(4, 1.0, 0, "c"), Continuation(5, 1.0, 1, "d"), Continuation(6, 1.0, 1, "e")]
    answers = [answer(-10), answer(-20), answer(-4), answer(-15), answer(-9), answer(-21), failed_score("timeout", "x")]
    out = intervention.deltas(3, conts, answers, negatives={4, 5})
    assert out.own == [6.0, 5.0] and out.others == [1.0, -1.0] and out.failed == 0
    out = intervention.deltas(4, conts, answers, negatives={3, 6})
    assert out.own == [1.0] and out.others == [6.0, 5.0] and out.failed == 1 and "timeout" in out.error


def test_requests_put_the_explanation_after_the_text():
    (request,) = intervention.requests_for(" music ", [Continuation(1, 1.0, 0, "la la")])
    assert request.prompt.startswith("la la\n\n") and request.prompt.endswith("toward: music")
    assert request.prompt[request.score_from :] == " music"  # the first word's token starts in the scored part


WORDS = {0: " music", 1: " water", 2: " Paris"}
EXPLANATIONS = {0: "music and musical instruments", 1: "water and rivers", 2: "Paris and France"}


@pytest.fixture(scope="module")
def steered(subject):
    """Three latents whose decoder rows promote one word each (least-norm logit directions, written
    into the residual stream after layer 20), steered from three neutral prompts."""
    unembedding = subject.model.get_output_embeddings().weight.detach().float()
    ids = [subject.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in WORDS.values()]
    directions = torch.linalg.pinv(unembedding)[:, ids].T / subject.model.model.norm.weight.detach().float()
    d = subject.d_model
    coder = TopKSAE(torch.zeros(3, d), torch.zeros(3), directions, torch.zeros(d), k=1)
    prompts = [subject.tokenizer(t, add_special_tokens=False)["input_ids"] for t in
               ("Yesterday I", "The best thing about", "In the morning we")]
    cfg = SteeringConfig(target_kl=1.0, multipliers=(1.0, 2.0), max_new_tokens=8, bisection_steps=6)
    return intervention.steer_latents(subject, coder, "layers.20", list(WORDS), prompts, cfg)


@pytest.mark.slow
def test_steering_is_calibrated_and_changes_the_continuations(steered):
    clean = [c for c in steered if c.latent is None]
    assert len(clean) == 3 and len(steered) == 3 + 3 * 2 * 3
    for latent in WORDS:
        mine = [c for c in steered if c.latent == latent]
        assert {c.multiplier for c in mine} == {1.0, 2.0}
        assert 0.25 <= mine[0].kl <= 4.0  # the calibrated scale lands near the target KL of 1 nat
        assert any(c.text != clean[c.prompt].text for c in mine)


@pytest.mark.slow
def test_true_explanations_pick_out_their_latents_continuations(steered):
    llm = LocalChatLLM()
    true_auc, shuffled_auc = [], []
    for latent in WORDS:
        for explanation, dest in ((EXPLANATIONS[latent], true_auc), (EXPLANATIONS[(latent + 1) % 3], shuffled_auc)):
            answers = llm.score_prompts(intervention.requests_for(explanation, steered))
            out = intervention.deltas(latent, steered, answers, negatives=set(WORDS) - {latent})
            assert out.failed == 0 and len(out.own) == 6 and len(out.others) == 12
            dest.append(metrics.auroc([1] * len(out.own) + [0] * len(out.others), out.own + out.others))
    print(f"intervention AUROC true {[round(a, 2) for a in true_auc]} shuffled {[round(a, 2) for a in shuffled_auc]}")
    assert sum(true_auc) / 3 >= 0.75, true_auc
    assert sum(true_auc) / 3 - sum(shuffled_auc) / 3 >= 0.3, (true_auc, shuffled_auc)
