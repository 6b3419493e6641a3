"""Procedurally synthesized sound events for SELD classes (nothing is downloaded).

Each generator takes a seeded rng and returns a unit-peak signal of the requested length that
loops its pattern (rings, claps, steps…) with random timing, pitch and timbre, so that every seed
gives a different instance of the class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _decaying(rng: np.random.Generator, fs: int, length_s: float, decay_s: float) -> np.ndarray:
    t = np.arange(int(length_s * fs)) / fs
    return np.exp(-t / decay_s), t


def _place(out: np.ndarray, sound: np.ndarray, start: int) -> None:
    end = min(len(out), start + len(sound))
    if start < len(out):
        out[start:end] += sound[: end - start]


def clapping(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Hand claps: bright noise bursts of ~10 ms decay at a jittered 3–6 Hz rate."""
    out = np.zeros(n)
    env, _ = _decaying(rng, fs, 0.08, rng.uniform(0.008, 0.015))
    t0, rate = 0.0, rng.uniform(3, 6)
    while t0 * fs < n:
        burst = np.diff(rng.standard_normal(len(env) + 1)) * env
        _place(out, burst * rng.uniform(0.6, 1.0), int(t0 * fs))
        t0 += rng.uniform(0.8, 1.2) / rate
    return out


def telephone(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """A ringing phone: two tones amplitude-modulated at 20 Hz, 1–2 s rings with pauses."""
    t = np.arange(n) / fs
    f1, f2 = rng.uniform(400, 500), rng.uniform(900, 1100)
    ring_on, period = rng.uniform(1.0, 2.0), rng.uniform(3.0, 4.5)
    gate = (np.mod(t, period) < ring_on).astype(float)
    return gate * (np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t)) * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 20 * t)))


def footsteps(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Steps: low-passed thuds with a short scuff, about two per second."""
    out = np.zeros(n)
    env, t = _decaying(rng, fs, 0.25, rng.uniform(0.03, 0.06))
    t0 = 0.0
    while t0 * fs < n:
        thud = np.sin(2 * np.pi * rng.uniform(60, 120) * t) * env + 0.3 * rng.standard_normal(len(t)) * env**3
        _place(out, thud, int(t0 * fs))
        t0 += rng.uniform(0.45, 0.6)
    return out


def knock(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Knocking on a door: groups of 2–4 knocks, each a damped wooden resonance."""
    out = np.zeros(n)
    env, t = _decaying(rng, fs, 0.15, rng.uniform(0.015, 0.03))
    modes = rng.uniform(150, 700, 3)
    t0 = 0.0
    while t0 * fs < n:
        for k in range(int(rng.integers(2, 5))):
            hit = sum(np.sin(2 * np.pi * f * t) for f in modes) * env + 0.2 * rng.standard_normal(len(t)) * env**4
            _place(out, hit, int((t0 + 0.18 * k) * fs))
        t0 += rng.uniform(1.5, 3.0)
    return out


def bell(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """A struck bell: inharmonic partials (0.5, 1, 1.2, 1.5, 2, 2.7 × f0) with long decays."""
    out = np.zeros(n)
    f0 = rng.uniform(300, 900)
    env, t = _decaying(rng, fs, 2.0, rng.uniform(0.4, 0.9))
    partials = sum(a * np.sin(2 * np.pi * r * f0 * t) * env ** (r / 1.5)
                   for r, a in ((0.5, 0.6), (1.0, 1.0), (1.2, 0.5), (1.5, 0.4), (2.0, 0.3), (2.7, 0.2)))
    t0 = 0.0
    while t0 * fs < n:
        _place(out, partials, int(t0 * fs))
        t0 += rng.uniform(1.0, 2.5)
    return out


def alarm(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """An electronic alarm: square-wave beeps alternating between two pitches."""
    t = np.arange(n) / fs
    f1, f2 = rng.uniform(700, 1500, 2)
    beep = rng.uniform(0.15, 0.4)
    freq = np.where(np.mod(t, 2 * beep) < beep, f1, f2)
    phase = 2 * np.pi * np.cumsum(freq) / fs
    return np.sign(np.sin(phase)) * (np.mod(t, beep) < 0.8 * beep)


def water_tap(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Running water: band-passed noise with a slowly fluctuating level and droplet ticks."""
    from scipy.signal import butter, sosfilt

    lo = rng.uniform(500, 1500)
    sos = butter(2, [lo, min(lo * 4, fs / 2 - 100)], btype="band", fs=fs, output="sos")
    t = np.arange(n) / fs
    level = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
    ticks = (rng.random(n) < 30 / fs) * rng.uniform(0, 3, n)
    return sosfilt(sos, rng.standard_normal(n) + ticks) * level


EVENTS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "clapping": clapping, "telephone": telephone, "footsteps": footsteps, "knock": knock,
    "bell": bell, "alarm": alarm, "water": water_tap,
}
"""Synthesized event classes by name (signal references ``event:<name>:<seed>``)."""


def synth_event(name: str, seed: int, duration: float, fs: int) -> np.ndarray:
    """A unit-peak instance of event class ``name`` drawn from ``seed``."""
    x = EVENTS[name](np.random.default_rng(seed), int(round(duration * fs)), fs)
    return x / (np.max(np.abs(x)) + 1e-12)
