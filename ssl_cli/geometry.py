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
        unit = "millimetres" if spread > 100 * MAX_SPREAD_M else "centimetres"
        raise GeometryError(f"{where}: positions spread over {spread:.0f} m; sslkit reads metres and these look like {unit} "
                            f"(divide by {1000 if unit == 'millimetres' else 100})")
