"""The chance baseline's explanations: each latent's is another latent's, of the same partition.

The donor is drawn from `numpy.random.default_rng([seed, latent, CHANCE_STREAM])` among the
other latents with a usable explanation, so it is deterministic and independent of which
latents are being scored together. A shuffled explanation is a real explanation of the same
style and length, only about something else: what a score means is how far it stands above
the score that explanation gets.
"""

from __future__ import annotations

import numpy as np

CHANCE_STREAM = 7919  # separates this draw from every other use of (seed, latent)


def donors(explained: dict[int, str], seed: int) -> dict[int, int]:
    """latent -> the latent whose explanation serves as its chance baseline. Latents are left out
    when no other latent has a different explanation to lend."""
    latents = sorted(explained)
    out = {}
    for latent in latents:
        others = [o for o in latents if o != latent and explained[o] != explained[latent]]
        if others:
            out[latent] = others[int(np.random.default_rng([seed, latent, CHANCE_STREAM]).integers(len(others)))]
    return out
