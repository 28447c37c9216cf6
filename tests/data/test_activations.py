"""The streaming encode against a dense reference, on the real SmolLM2."""

import numpy as np
import polars as pl
import pytest
import torch
from support.numeric import assert_same_topk

from autointerp_assets.coders import Neurons, TopKSAE
from autointerp_assets.data.activations import FIRST_POS, collect_hidden, stream_activations
from autointerp_assets.data.subject import UnknownHookpointError, forward_captures, steer

pytestmark = pytest.mark.slow


def random_sae(d_in: int, n: int, k: int) -> TopKSAE:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(n, d_in, generator=g) / d_in**0.5
    return TopKSAE(w, torch.zeros(n), w.clone(), torch.zeros(d_in), k)


@pytest.fixture(scope="module")
def tokens(subject):
    text = open(torch.__file__).read() * 4
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"][: 6 * 32]
    return np.asarray(ids, dtype=np.int32).reshape(6, 32)


def dense_reference(subject, tokens, layer: int, batch_size: int) -> torch.Tensor:
    """Hidden states after decoder layer `layer` from an unhooked full forward: [n, T, d].

    Batched as the code under test batches, so both sides run the same bf16 kernels on the
    same shapes: what differs is only the hooks and the early stop being tested."""
    parts = []
    with torch.inference_mode():
        for lo in range(0, len(tokens), batch_size):
            batch = torch.from_numpy(tokens[lo : lo + batch_size].astype(np.int64))
            parts.append(subject.model(batch, output_hidden_states=True).hidden_states[layer + 1].float())
    return torch.cat(parts)


def test_stream_matches_dense_topk_and_chunks(subject, tokens):
    sae = random_sae(subject.d_model, 64, 4)
    chunks = []
    seq_ids = np.arange(100, 106)
    stats = stream_activations(
        subject, tokens, seq_ids, {"layers.2": (subject.resolve("layers.2"), sae)}, batch_size=4,
        chunk_tokens=64, sink=lambda hp, i, rows: chunks.append((i, rows)),
    )
    assert [i for i, _ in chunks] == list(range(len(chunks))) and len(chunks) >= 2  # streamed, in order
    rows = pl.concat([r for _, r in chunks])
    n, T = tokens.shape
    assert stats["layers.2"].n_tokens == n * (T - FIRST_POS) and stats["layers.2"].nnz == rows.height

    h = dense_reference(subject, tokens, 2, batch_size=4)[:, FIRST_POS:]  # [n, T-1, d]
    pre = torch.relu((h - sae.b_dec) @ sae.encoder_weight.T + sae.encoder_bias)  # dense [n, T-1, 64]
    got = torch.zeros_like(pre)
    for seq, pos, latent, value in rows.iter_rows():
        got[seq - 100, pos - FIRST_POS, latent] = value
    # The hooked bf16 pass stops early; the reference runs the whole model. Same values, and a
    # top-4 choice the reference could have made: near-ties may go either way on another CPU.
    assert_same_topk(got, pre, k=4, atol=2e-2, rtol=2e-2)
    assert (got > 0).sum() == rows.height > 0.9 * 4 * pre.shape[0] * pre.shape[1]  # nearly every token fires 4
    assert (rows["pos"] >= FIRST_POS).all()


def test_one_pass_serves_several_hookpoints_including_neurons(subject, tokens):
    mlp = subject.resolve("layers.1.mlp", "neurons")
    got: dict[str, list] = {"layers.1.mlp": [], "layers.3": []}
    stream_activations(
        subject, tokens[:2], np.arange(2),
        {"layers.1.mlp": (mlp, Neurons(subject.width(mlp), top_k=8)),
         "layers.3": (subject.resolve("layers.3"), random_sae(subject.d_model, 32, 2))},
        batch_size=2, chunk_tokens=10_000, sink=lambda hp, i, rows: got[hp].append(rows),
    )
    neurons = pl.concat(got["layers.1.mlp"])
    assert neurons["latent"].max() < subject.width(mlp) == 1536
    assert neurons.group_by("seq", "pos").len()["len"].max() <= 8
    assert pl.concat(got["layers.3"]).height > 0


def test_collect_hidden_skips_the_sink_position(subject, tokens):
    h = collect_hidden(subject, tokens, subject.resolve("layers.2"), batch_size=4, max_tokens=40)
    ref = dense_reference(subject, tokens[:2], 2, batch_size=4)[:, FIRST_POS:].reshape(-1, subject.d_model)[:40]
    assert h.shape == (40, subject.d_model) and torch.allclose(h, ref, atol=2e-2, rtol=2e-2)


def test_unknown_hookpoint_lists_the_accepted_forms(subject):
    for bad in ("layers.99", "layers.6.mlp.down_proj", "blocks.6.hook_resid_post", "norm"):
        with pytest.raises(UnknownHookpointError) as e:
            subject.resolve(bad)
        text = str(e.value)
        assert f"unknown hookpoint '{bad}'" in text
        for form in ("'layers.N'", "'layers.N.mlp'", "'layers.N.self_attn'", "'embed_tokens'", "0 … 29"):
            assert form in text
    with pytest.raises(UnknownHookpointError, match="down projection"):
        subject.resolve("layers.2", "neurons")


def test_a_failing_sink_stops_the_stream_with_its_error(subject, tokens):
    """The writer thread's failure reaches the caller (no hang, no silent loss)."""
    calls = []

    def full_disk(hp, i, rows):
        calls.append(i)
        raise OSError("No space left on device")

    with pytest.raises(RuntimeError, match="activations writer failed: OSError: No space left on device"):
        stream_activations(subject, tokens, np.arange(6), {"layers.2": (subject.resolve("layers.2"),
                                                                        random_sae(subject.d_model, 64, 4))},
                           batch_size=1, chunk_tokens=31, sink=full_disk, max_pending=1)
    assert calls == [0]  # it stopped at the first failure
    with pytest.raises(UnknownHookpointError, match="reads token ids"):
        subject.resolve("embed_tokens", "input")


def test_every_accepted_hookpoint_form_reads_its_tensor(subject, tokens):
    """Each form captures what the module docstring says, checked against an unhooked full forward."""
    batch = torch.from_numpy(tokens[:2].astype(np.int64))
    layer = subject.model.model.layers[2]
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, tensor: torch.Tensor) -> None:  # a hook that returns None changes nothing
        seen[name] = tensor

    hooks = [
        layer.self_attn.register_forward_hook(lambda m, a, out: keep("attn", out[0])),
        layer.mlp.register_forward_hook(lambda m, a, out: keep("mlp", out)),
        layer.mlp.gate_proj.register_forward_pre_hook(lambda m, a: keep("mlp_in", a[0])),
    ]
    try:
        with torch.inference_mode():
            out = subject.model(batch, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    expected = {
        ("embed_tokens", "output"): out.hidden_states[0],
        ("model.layers.2", "output"): out.hidden_states[3],
        ("layers.2", "input"): out.hidden_states[2],
        ("layers.2.self_attn", "output"): seen["attn"],
        ("layers.2.mlp", "output"): seen["mlp"],
        ("layers.2.mlp", "input"): seen["mlp_in"],
    }
    for (hookpoint, where), ref in expected.items():
        capture = subject.resolve(hookpoint, where)
        got = forward_captures(subject, batch, [capture])[hookpoint]
        assert got.shape == (*batch.shape, subject.width(capture)) == ref.shape, hookpoint
        torch.testing.assert_close(got.float(), ref.float(), atol=2e-2, rtol=2e-2, msg=lambda m, h=hookpoint, w=where: f"{h} {w}: {m}")


def test_steer_adds_the_delta_where_the_coder_writes(subject, tokens):
    batch = torch.from_numpy(tokens[:1].astype(np.int64))
    residual = subject.resolve("layers.2")
    mlp = subject.resolve("layers.2.mlp")
    clean = forward_captures(subject, batch, [residual, mlp])
    delta = torch.randn(subject.d_model, generator=torch.Generator().manual_seed(1))
    with steer(residual, delta):
        steered = forward_captures(subject, batch, [residual])[residual.hookpoint]
    torch.testing.assert_close(steered.float(), clean[residual.hookpoint].float() + delta, atol=0.1, rtol=0.02)

    neurons = subject.resolve("layers.2.mlp", "neurons")
    with steer(neurons, 3.0 * torch.nn.functional.one_hot(torch.tensor(7), subject.width(neurons)).float()):
        pushed = forward_captures(subject, batch, [mlp])[mlp.hookpoint]
    column = subject.model.model.layers[2].mlp.down_proj.weight.detach().float()[:, 7]
    torch.testing.assert_close(pushed.float(), clean[mlp.hookpoint].float() + 3.0 * column, atol=0.1, rtol=0.02)
    with pytest.raises(ValueError, match="not its input"):
        with steer(subject.resolve("layers.2.mlp", "input"), delta):
            pass
