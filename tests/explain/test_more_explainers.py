"""The single-token and output-side explainers: prompts, and promoted tokens on the real SmolLM2."""

from __future__ import annotations

import pytest
import torch

from autointerp_assets.coders import Neurons, TopKSAE
from autointerp_assets.explain import output_side, single_token
from autointerp_assets.explain.prompts import parse_explanation
from autointerp_assets.llm.prompts import OPEN, Example, tok


def test_peak_only_keeps_the_first_maximum():
    ex = Example((" a", " b", " c", " d"), (1.0, 3.0, 3.0, 0.5))
    assert single_token.peak_only(ex).acts == (0.0, 3.0, 0.0, 0.0)


def test_single_token_prompt_highlights_one_token_per_example():
    examples = [tok(" x", (" y", 2.0), (" z", 5.0)), tok((" p", 1.0), " q")]
    messages = single_token.build_messages(examples)
    user = messages[-1]["content"]
    assert user.splitlines()[1:] == ["Example 1:  x y <<z>>", "Example 2:  <<p>> q"]
    assert all(m["content"].count(OPEN) == m["content"].count("Example") for m in messages[1:] if m["role"] == "user")
    assert parse_explanation(messages[2]["content"]).value == "days of the week"
    with pytest.raises(ValueError):
        single_token.build_messages([])


def test_output_side_prompt_lists_promoted_tokens():
    messages = output_side.build_messages([tok(" a", (" cat", 4.0))], [" dog", "\n", " pets"])
    assert messages[-1]["content"].endswith('Tokens the latent promotes: " dog", "\\\\n", " pets"')
    assert "<<cat>>" in messages[-1]["content"] and messages[0]["role"] == "system"


@pytest.mark.slow
def test_promoted_tokens_read_the_decoder_through_the_unembedding(subject):
    """A direction built to raise one token's logit (the least-norm solution of W_U v = one-hot, through
    the final norm's weight) promotes that token first; neurons read their down projection's column."""
    words = [" music", " water", " Paris"]
    ids = [subject.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    unembedding = subject.model.get_output_embeddings().weight.detach().float()
    d = subject.d_model
    W_dec = torch.zeros(8, d)
    gain = subject.model.model.norm.weight.detach().float()
    W_dec[[2, 5, 7]] = torch.linalg.pinv(unembedding)[:, ids].T / gain
    sae = TopKSAE(torch.zeros(8, d), torch.zeros(8), W_dec, torch.zeros(d), k=1)
    promoted = output_side.promoted_tokens(subject, sae, "layers.20", [2, 5, 7], k=10)
    for latent, word in zip([2, 5, 7], words, strict=True):
        assert promoted[latent][0] == word, (word, promoted[latent])

    neurons = Neurons(1536)
    got = output_side.promoted_tokens(subject, neurons, "layers.3.mlp", [11], k=5)[11]
    down = subject.model.model.layers[3].mlp.down_proj.weight.detach().float()[:, 11]
    logits = unembedding @ (down * gain)
    assert got == [subject.tokenizer.decode([t]) for t in logits.topk(5).indices.tolist()]
