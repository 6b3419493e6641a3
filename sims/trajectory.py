"""Smooth source trajectories: a cubic spline through waypoints, travelled at constant speed."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

SAMPLES_PER_SEGMENT = 200


def positions_at(waypoints: np.ndarray, speed: float, times: np.ndarray) -> np.ndarray:
    """Source positions at ``times`` (s), shape (len(times), 3).

    With one waypoint the source is static. Otherwise it follows a natural cubic spline through
    the waypoints (chord-length parametrised) at ``speed`` m/s, turning back at either end, so
    position and velocity magnitude are continuous.
    """
    waypoints = np.asarray(waypoints, dtype=float)
    times = np.asarray(times, dtype=float)
    if len(waypoints) == 1 or speed == 0:
        return np.repeat(waypoints[:1], len(times), axis=0)
    curve, arc = _arc_length_table(waypoints)
    length = arc[-1]
    s = np.mod(speed * times, 2 * length)
    s = np.where(s > length, 2 * length - s, s)  # ping-pong between the ends
    return curve(np.interp(s, arc, np.linspace(0, 1, len(arc))))


def _arc_length_table(waypoints: np.ndarray) -> tuple[CubicSpline, np.ndarray]:
    """The spline (parameter u in [0, 1]) and cumulative arc length at evenly spaced u."""
    chord = np.r_[0, np.cumsum(np.linalg.norm(np.diff(waypoints, axis=0), axis=1))]
    u = chord / chord[-1]
    curve = CubicSpline(u, waypoints, bc_type="natural")
    dense = curve(np.linspace(0, 1, SAMPLES_PER_SEGMENT * len(waypoints)))
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    return curve, arc
