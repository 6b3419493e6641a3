"""Room-acoustic measurements on impulse responses, used to check simulations against physics."""

from __future__ import annotations

import numpy as np


def schroeder_decay_db(rir: np.ndarray) -> np.ndarray:
    """Schroeder backward-integrated energy decay curve in dB (0 dB at t = 0), shape (n,)."""
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    return 10 * np.log10(energy / energy[0] + 1e-300)


def measure_rt60(rir: np.ndarray, fs: int, fit_db: tuple[float, float] = (-5.0, -25.0)) -> float:
    """RT60 (s) by a line fit to the Schroeder decay between ``fit_db`` levels, extrapolated to -60 dB.

    The default (-5, -25) dB range is T20, robust to the noise floor and truncation at the end.
    """
    decay = schroeder_decay_db(rir)
    hi, lo = fit_db
    idx = np.nonzero((decay <= hi) & (decay >= lo))[0]
    if len(idx) < 2:
        raise ValueError("impulse response too short to measure its decay")
    slope, _ = np.polyfit(idx / fs, decay[idx], 1)  # dB per second, negative
    return -60.0 / slope
