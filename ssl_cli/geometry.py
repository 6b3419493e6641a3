"""Physical sanity of geometry and constants: the speed of sound, and coordinates in metres."""

from __future__ import annotations

import numpy as np

from sslkit.errors import GeometryError, UserError

MAX_SPREAD_M = 100.0
"""Coordinates spread over more than this many metres are taken for millimetres or centimetres."""


def check_speed_of_sound(c: float) -> float:
    """``c`` in m/s as a finite positive number (air: about 343), else UserError."""
    if not (np.isfinite(c) and c > 0):
        raise UserError(f"the speed of sound must be a positive number of m/s (air: 343), got {c}")
    return c


def check_metres(xyz: np.ndarray, where: object) -> None:
    """GeometryError when the finite points (n, 3) spread over more than ``MAX_SPREAD_M``: sslkit
    takes positions in metres, and such a spread is almost surely millimetres or centimetres."""
    finite = xyz[np.isfinite(xyz).all(axis=1)]
    if len(finite) < 2:
        return
    spread = float(np.max(finite.max(axis=0) - finite.min(axis=0)))
    if spread > MAX_SPREAD_M:
        raise GeometryError(f"{where}: positions spread over {spread:.0f} m, but sslkit reads metres: in millimetres they would "
                            f"spread over {spread / 1000:.3g} m, in centimetres {spread / 100:.3g} m; convert them to metres")


UNIT_RATIO = 30.0
"""Ratio of typical magnitudes from which two sets of positions are taken to be in different units."""


def check_same_units(estimates: np.ndarray, truth: np.ndarray, where: object) -> None:
    """GeometryError when estimates (n, 3) are typically ``UNIT_RATIO`` times larger or smaller
    than the truth (m, 3) (one of them in mm or cm), measured about the truth's centre."""
    finite = estimates[np.isfinite(estimates).all(axis=1)]
    if len(finite) == 0 or len(truth) == 0:
        return
    centre = truth.mean(axis=0)
    scale_truth = max(float(np.median(np.linalg.norm(truth, axis=1))), 1e-3)
    scale_est = float(np.median(np.linalg.norm(finite, axis=1)))
    ratio = scale_est / scale_truth
    if ratio > UNIT_RATIO or ratio < 1 / UNIT_RATIO:
        typical = float(np.median(np.linalg.norm(finite - centre, axis=1)))
        raise GeometryError(f"{where}: the estimates lie about {typical:.3g} m from the truth and are about {ratio:.3g}× its scale: "
                            "are they in millimetres or centimetres? sslkit reads metres")
