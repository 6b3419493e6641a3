"""Channel-swap augmentation (ACS) for symmetric arrays: permuting the channels of a recording is
the same as rotating or reflecting the scene when the permutation maps the array onto itself.

If p_π(i) = R p_i for every mic i (positions relative to the array centre, R orthogonal), then the
recording with channel i replaced by channel π(i) is what the array would record from a source at
Rᵀd instead of d. A regular tetrahedron (the MIC format) has all 24 such symmetries.
"""

from __future__ import annotations

import itertools

import numpy as np

MAX_SEARCH_MICS = 6
TOL_SYMMETRY = 0.01
"""A permutation counts as a symmetry when it moves no mic by more than 1 % of the array radius
(STARSS23's nominal ±35° elevations are 0.26° off a regular tetrahedron: 0.5 % of the radius)."""


def channel_swaps(mics: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """All (π, R) with p_π(i) = R p_i for the array, identity first. mics (M, 3) → [(perm (M,), R (3, 3))].

    Arrays of more than MAX_SEARCH_MICS mics get the identity only (the search is over M! permutations).
    """
    if len(mics) > MAX_SEARCH_MICS:
        return [(np.arange(len(mics)), np.eye(3))]
    p = mics - mics.mean(axis=0)
    scale = np.abs(p).max()
    out = []
    for perm in itertools.permutations(range(len(p))):
        target = p[list(perm)]
        u, _, vt = np.linalg.svd(target.T @ p)  # orthogonal Procrustes: R minimising ‖R pᵢ − p_π(i)‖
        r = u @ vt
        if np.abs(p @ r.T - target).max() < TOL_SYMMETRY * scale:
            out.append((np.array(perm), r))
    return out


def swap_targets(target: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Dummy-track targets (..., 1+4, C) with ACCDOA vectors d replaced by Rᵀd (distance kept)."""
    out = target.copy()
    out[..., 1:4, :] = np.einsum("ji,...jc->...ic", rotation, target[..., 1:4, :])
    return out
