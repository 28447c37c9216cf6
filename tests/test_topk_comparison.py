"""The tie-robust top-k comparison used by the numeric tests, on cases whose answer is known."""

import pytest
import torch
from support.numeric import assert_same_topk

REFERENCE = torch.tensor([[5.0, 3.0, 2.999, 1.0, 0.0]])  # latents 1 and 2 tie within rounding


def kept(*pairs: tuple[int, float]) -> torch.Tensor:
    got = torch.zeros_like(REFERENCE)
    for latent, value in pairs:
        got[0, latent] = value
    return got


def test_either_side_of_a_near_tie_passes():
    assert_same_topk(kept((0, 5.0), (1, 3.0)), REFERENCE, k=2, atol=1e-2, rtol=0)
    assert_same_topk(kept((0, 5.0), (2, 2.999)), REFERENCE, k=2, atol=1e-2, rtol=0)


@pytest.mark.parametrize("got, problem", [
    (kept((0, 5.0), (3, 1.0)), "clearly"),  # 1.0 is no near-tie of the 2nd-largest
    (kept((1, 3.0), (2, 2.999)), "clearly in the top"),  # the largest was left out
    (kept((0, 4.0), (1, 3.0)), "differ from the reference"),  # right latent, wrong value
    (kept((0, 5.0), (1, 3.0), (2, 2.999)), "more than k"),
])
def test_a_wrong_choice_or_value_fails(got, problem):
    with pytest.raises(AssertionError, match=problem):
        assert_same_topk(got, REFERENCE, k=2, atol=1e-2, rtol=0)
