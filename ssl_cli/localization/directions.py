"""Directions of arrival (far field): the grid of directions, azimuth/elevation conversions, and
far-field SRP-PHAT found by a coarse-to-fine search over direction cells.

A source far away compared with the array's aperture is heard as a plane wave from direction u
(unit vector from the array centroid); pair (i, j) then has range difference
δᵢⱼ(u) = −(rᵢ − rⱼ)·u (sslkit's sign: positive when the sound reaches mic i later). Directions are
given as azimuth (degrees counter-clockwise from +x in the x-y plane of mics.csv) and elevation
(degrees up from that plane).

The search is that of the near-field SRP (:mod:`.srp`) on the sphere: a Fibonacci grid of
``COARSE_DIRECTIONS`` cells; within a cell of angular radius ρ every pair's range difference moves
by at most ‖rᵢ − rⱼ‖·ρ, so the correlations max-pooled over that many lags bound the power in the
cell from above (but for the small overshoot of the cubic interpolation below); each level keeps
2 × ``BEAM`` distinct cells, those with the highest bounds and those with the highest centre power
taken in turn, splits each into 4 children of half the radius, down to ``FINAL_DEG``. As there, each frame also scores the answers of the frames within
``srp.SEED_SPAN_S`` of it, with the leaves next to them, and keeps one that beats its own. In 2D
(``horizontal``) the cells are arcs of the horizontal circle, ``COARSE_DIRECTIONS`` of them, each
split into 2. The correlations are read between their bins by cubic (Catmull-Rom) interpolation:
with linear interpolation the power is largest where the pairs' lags fall on bins, so the answers
moved in steps of a bin over the aperture, coarse for a compact array.

An array that lies in a plane (or, in 2D, on a line or in a vertical plane) hears a direction and
its mirror image about that plane alike: :func:`~sslkit.geometry.on_known_side` reports the side the bounds give.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sslkit.localization.srp import cell_bounds, distinct_top_cells, lag_steering, max_pooled, power_at_bins, second_differences, with_lent_answers

COARSE_DIRECTIONS = 512
"""Cells of the first level (about 9° apart)."""
FINAL_DEG = 0.1
"""Angular radius (degrees) of the leaf cells, whose centres are the answers."""
BEAM = 16
"""Half the cells kept per level and frame unless the options say (see :func:`~sslkit.localization.srp.distinct_top_cells`)."""
SUPPRESS_SAMPLES = 1.0
"""Lag half-width (samples) removed around a found direction's TDOAs before the next source is searched."""


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) spread evenly over the sphere (golden-angle spiral)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = k * math.pi * (3 - math.sqrt(5))
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def azimuth_elevation(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation in degrees of direction vectors (..., 3) (any length; NaN stays NaN)."""
    azimuth = np.degrees(np.arctan2(u[..., 1], u[..., 0]))
    elevation = np.degrees(np.arctan2(u[..., 2], np.hypot(u[..., 0], u[..., 1])))
    return azimuth, elevation


def unit_vector(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of azimuth and elevation in degrees."""
    az, el = np.radians(azimuth), np.radians(elevation)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angles in degrees between direction vectors u and v (..., 3), broadcast."""
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((u * v).sum(-1), -1.0, 1.0)))


def circle_directions(n: int) -> np.ndarray:
    """``n`` unit vectors (n, 3) evenly spaced around the horizontal (x-y) plane, from +x."""
    phi = 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], axis=1)


def turned(u: torch.Tensor, angle: float) -> torch.Tensor:
    """Directions u (..., 3) turned about the z axis by ``angle`` radians (counter-clockwise seen from +z)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.stack([c * u[..., 0] - s * u[..., 1], s * u[..., 0] + c * u[..., 1], u[..., 2]], dim=-1)


def direction_bins(u: torch.Tensor, mics: torch.Tensor, pairs: torch.Tensor, bins_per_m: float, n_lags: int) -> torch.Tensor:
    """Lag bin (fractional, lag 0 at the centre) of each pair's far-field range difference: u (..., 3) → (..., P)."""
    baseline = mics[pairs[:, 0]] - mics[pairs[:, 1]]  # (P, 3)
    return (-(u @ baseline.T) * bins_per_m + (n_lags - 1) / 2).clamp(0, n_lags - 1.001)


def tangent_children(u: torch.Tensor, radius: float) -> torch.Tensor:
    """The centres (F, 4K, 3) of the 4 children (radius / 2) of the cells centred at u (F, K, 3)."""
    helper = torch.where(u[..., 2:].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0], device=u.device), torch.tensor([1.0, 0.0, 0.0], device=u.device))
    e1 = torch.nn.functional.normalize(torch.cross(u, helper.expand_as(u), dim=-1), dim=-1)
    e2 = torch.cross(u, e1, dim=-1)
    step = radius / 2
    offsets = [(a * step, b * step) for a in (-1, 1) for b in (-1, 1)]
    children = torch.stack([u + a * e1 + b * e2 for a, b in offsets], dim=2)  # (F, K, 4, 3)
    return torch.nn.functional.normalize(children, dim=-1).flatten(1, 2)


class DirectionSearch:
    """Coarse-to-fine far-field SRP over direction cells for one array (see module docstring)."""

    def __init__(self, mics: np.ndarray, pairs: np.ndarray, n_lags: int, bins_per_m: float, bins_per_sample: float, device: str,
                 beam: int | None = None, seed_frames: int = 0, horizontal: bool = False):
        self.bins_per_sample, self.beam, self.horizontal = bins_per_sample, beam or BEAM, horizontal
        self.candidates = max(COARSE_DIRECTIONS, 8 * self.beam)  # the most directions scored at once per frame: 4 children of 2 × beam cells
        self.seed_frames = min(seed_frames, self.candidates // (2 * 5))  # 5 candidates per lent answer: within one level's memory
        self.mics = torch.as_tensor(mics, dtype=torch.float32, device=device)
        self.pairs = torch.as_tensor(pairs, device=device)
        self.bins_per_m, self.n_lags = bins_per_m, n_lags
        self.longest = float(np.linalg.norm(mics[pairs[:, 0]] - mics[pairs[:, 1]], axis=1).max())
        grid = circle_directions(COARSE_DIRECTIONS) if horizontal else fibonacci_directions(COARSE_DIRECTIONS)
        self.grid = torch.as_tensor(grid, dtype=torch.float32, device=device)
        # a cell's angular radius: half the spacing on the circle; on the sphere, generously
        self.coarse_radius = math.pi / COARSE_DIRECTIONS if horizontal else math.sqrt(4 * math.pi / COARSE_DIRECTIONS)
        coarse_bins = direction_bins(self.grid, self.mics, self.pairs, bins_per_m, n_lags)  # the same for every frame
        self.coarse_value, self.coarse_bound = lag_steering(coarse_bins, n_lags, interpolate=True), lag_steering(coarse_bins, n_lags)

    def bound_width(self, radius: float) -> int:
        """Lags a cell of angular ``radius`` spans for the longest pair, plus the cubic interpolation's
        two bins and half a bin of rounding."""
        return int(math.ceil(self.longest * radius * self.bins_per_m + 2.5))

    def best(self, corr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The highest-power direction of each frame and its power: corr (F, P, L) → (F, 3), (F,)."""
        radius = self.coarse_radius
        u = self.grid.expand(len(corr), -1, -1)
        final = math.radians(FINAL_DEG)
        curvature = second_differences(corr)
        bound = (self.coarse_bound @ max_pooled(corr, self.bound_width(radius)).flatten(1).T).T  # (F, G)
        value = (self.coarse_value @ corr.flatten(1).T).T
        while True:
            chosen = distinct_top_cells(bound, value, self.beam)
            u = u.gather(1, chosen[..., None].expand(-1, -1, 3))
            if radius <= final:
                break
            u, radius = self.children(u, radius), radius / 2
            tau = direction_bins(u, self.mics, self.pairs, self.bins_per_m, self.n_lags)
            bound = cell_bounds(max_pooled(corr, self.bound_width(radius)), tau)
            value = power_at_bins(corr, tau, curvature)
        power = self.power(corr, curvature, u)
        top = power.argmax(dim=-1)
        rows = torch.arange(len(u), device=corr.device)
        return self.with_neighbours_answers(corr, curvature, u[rows, top], power[rows, top])

    def with_neighbours_answers(self, corr: torch.Tensor, curvature: torch.Tensor, u: torch.Tensor, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's answer (F, 3) and power (F,), replaced where one of the answers of the frames
        within ``seed_frames`` of it, or a leaf next to one, has a higher power in that frame."""
        leaf_neighbours = lambda lent: torch.cat([lent, self.children(lent, 2 * math.radians(FINAL_DEG))], dim=1)  # noqa: E731
        return with_lent_answers(u, power, self.seed_frames, leaf_neighbours, lambda candidates: self.power(corr, curvature, candidates))

    def children(self, u: torch.Tensor, radius: float) -> torch.Tensor:
        """The centres of the children (radius / 2) of the cells centred at u (F, K, 3): 4 each on the
        sphere (:func:`tangent_children`), 2 on the horizontal circle → (F, 4K or 2K, 3)."""
        if not self.horizontal:
            return tangent_children(u, radius)
        return torch.stack([turned(u, -radius / 2), turned(u, radius / 2)], dim=2).flatten(1, 2)

    def power(self, corr: torch.Tensor, curvature: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The steered power (F, K) of directions u (F, K, 3) in each frame of corr (F, P, L), whose
        ``second_differences`` are ``curvature`` (cubic interpolation)."""
        return power_at_bins(corr, direction_bins(u, self.mics, self.pairs, self.bins_per_m, self.n_lags), curvature)

    def suppress(self, corr: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """``corr`` with every pair's lags within ``SUPPRESS_SAMPLES`` of the found directions' (F, 3) TDOAs zeroed."""
        tau = direction_bins(found, self.mics, self.pairs, self.bins_per_m, self.n_lags)  # (F, P)
        lags = torch.arange(corr.shape[-1], device=corr.device)
        return corr.masked_fill((lags - tau[..., None]).abs() <= SUPPRESS_SAMPLES * self.bins_per_sample, 0.0)
