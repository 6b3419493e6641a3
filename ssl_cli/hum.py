"""Mains hum: a steady tone at 50 or 60 Hz and its harmonics, picked up by the wiring, the same on
every channel. Under rectangular frames it leaks over dozens of frequencies around each of its
lines, which PHAT weighs as much as the sound, and GCC-PHAT and SRP-PHAT then read delay 0; a
Hann window keeps it within a few (:func:`~sslkit.gcc.cross_spectra`'s ``taper``), better than
the default window, tapered at its edges only.
"""

from __future__ import annotations

import warnings

import numpy as np

from sslkit.errors import SslkitWarning
from sslkit.options import EDGE_TAPER

MAINS_HZ = (50.0, 60.0)
HUM_HARMONICS = 7
"""Harmonics of the mains frequency examined (the 1st to the 7th)."""
HUM_LINE_DB = 20.0
"""A harmonic is a hum line when it stands this far above the median of its surroundings in every second analysed."""
HUM_IN_PHASE = 0.9
"""… and its phase is the same on every channel: the length of the mean of the channels' unit phasors, averaged over seconds."""
SURROUND_HZ = (5.0, 25.0)
"""The surroundings of a line: frequencies this far from it (Hz)."""
LINE_TOLERANCE_HZ = 1.5
"""How far a line may sit from the exact harmonic (mains frequency drift, 1 Hz bins)."""
MIN_SECONDS = 3
HUM_SECONDS = 16
"""Seconds analysed, spread over the recording (fewer than ``MIN_SECONDS``: no verdict)."""
HUM_CHANNELS = 16
"""Channels analysed, spread over the array (hum is on all of them; the cost stays flat with many)."""


def mains_hum(audio: np.ndarray, fs: int) -> tuple[float, list[float]] | None:
    """The mains frequency (Hz) and the hum lines (Hz) found in audio (samples, channels), or None.

    Each of up to ``HUM_SECONDS`` one-second stretches spread over the recording is Hann-windowed
    and transformed (1 Hz bins), on up to ``HUM_CHANNELS`` channels. A harmonic k·f₀ (k = 1…``HUM_HARMONICS``) is a hum line when, in
    every stretch, its power (averaged over channels) stands ``HUM_LINE_DB`` above the median of
    its surroundings and its phase agrees across channels (``HUM_IN_PHASE``). Steadiness rules out
    speech and most music; the common phase rules out a tonal sound, which reaches the mics at
    different times, except on an array small next to its wavelength (about 7 m at 50 Hz).
    Recordings shorter than ``MIN_SECONDS`` get no verdict (None).
    """
    n = int(fs)
    count = min(HUM_SECONDS, len(audio) // n)
    if count < MIN_SECONDS or audio.shape[1] < 2:
        return None
    channels = np.unique(np.linspace(0, audio.shape[1] - 1, HUM_CHANNELS).round().astype(int))
    spectra = second_spectra(audio, channels, n, count, fs)
    best = None
    for mains in MAINS_HZ:
        lines = [k * mains for k in range(1, HUM_HARMONICS + 1) if is_hum_line(spectra, k * mains)]
        if lines and (best is None or len(lines) > len(best[1])):
            best = (mains, lines)
    return best


def second_spectra(audio: np.ndarray, channels: np.ndarray, n: int, count: int, fs: int) -> dict[str, np.ndarray]:
    """Spectra of ``count`` Hann-windowed stretches of n samples (each less its mean) spread over
    audio (samples, all channels), of the listed ``channels`` (C,), at the bins within
    ``SURROUND_HZ`` of a mains harmonic only: their frequencies ``freqs`` (B,) in Hz, ``values``
    (count, B, C) complex and ``power`` (count, B), the mean over channels."""
    freqs = np.arange(n // 2 + 1) * fs / n
    harmonics = np.array([k * m for m in MAINS_HZ for k in range(1, HUM_HARMONICS + 1)])
    bins = np.flatnonzero((np.abs(freqs[:, None] - harmonics[None]) <= SURROUND_HZ[1]).any(axis=1))
    window = np.hanning(n).astype(np.float32)
    starts = np.linspace(0, len(audio) - n, count).astype(int)
    stretches = (np.ascontiguousarray(audio[s : s + n, channels].T) for s in starts)  # (C, n): each channel's FFT on contiguous samples
    values = np.stack([np.fft.rfft((x - x.mean(axis=1, keepdims=True)) * window, axis=1)[:, bins].T for x in stretches])
    return {"freqs": freqs[bins], "values": values, "power": (np.abs(values) ** 2).mean(axis=2)}


def is_hum_line(spectra: dict[str, np.ndarray], line_hz: float) -> bool:
    """Whether ``line_hz`` is a steady line, in phase on every channel, in every stretch of ``spectra``."""
    f = spectra["freqs"]
    near, ring = np.abs(f - line_hz) <= LINE_TOLERANCE_HZ, (np.abs(f - line_hz) >= SURROUND_HZ[0]) & (np.abs(f - line_hz) <= SURROUND_HZ[1])
    if not near.any() or not ring.any():
        return False
    values, power = spectra["values"], spectra["power"]  # (stretches, bins, channels), (stretches, bins)
    peak = np.flatnonzero(near)[power[:, near].argmax(axis=1)]  # the line's bin in each stretch
    stretches = np.arange(len(values))
    prominence_db = 10 * np.log10(power[stretches, peak] / (np.median(power[:, ring], axis=1) + 1e-30) + 1e-30)
    phasors = values[stretches, peak]
    in_phase = np.abs((phasors / (np.abs(phasors) + 1e-30)).mean(axis=1)).mean()
    return bool(prominence_db.min() >= HUM_LINE_DB and in_phase >= HUM_IN_PHASE)


def phat_taper(audio: np.ndarray, fs: int, taper: float | None, path: object = None) -> float:
    """The share of each frame PHAT-weighted methods taper (:func:`~sslkit.gcc.cross_spectra`):
    ``taper`` when given (True: 1, a Hann window; False: 0, rectangular); else ``EDGE_TAPER``, or a
    Hann window when the audio carries mains hum (:func:`mains_hum`), with a warning naming ``path``
    and the lines."""
    if taper is not None:
        return float(taper)
    hum = mains_hum(audio, fs)
    if hum is None:
        return EDGE_TAPER
    mains, lines = hum
    warnings.warn(SslkitWarning(f"{path or 'the recording'}: mains hum at {mains:g} Hz, the same on every channel (lines at {', '.join(f'{f:g}' for f in lines)} Hz, "
                                f"{HUM_LINE_DB:g} dB or more above their surroundings throughout): PHAT frames are Hann-windowed "
                                "(taper=False / --no-taper keeps them rectangular)"), stacklevel=3)
    return 1.0
