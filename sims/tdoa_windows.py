"""Training and test windows for TDOA models, cut from simulated recordings with known truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sslkit.geometry import range_differences, speed_of_sound
from sslkit.recording import Recording

ACTIVE_DB = 30.0
"""A window is used when its power is within this many dB of the recording's loudest window."""


@dataclass
class WindowBank:
    """Recordings and, for each, the start samples of its non-silent windows.

    ``pairs[r]`` lists the mic pairs (P, 2) that can be drawn from recording r (all pairs of its
    room mics: the near-source channel is excluded).
    """

    recordings: list[Recording]
    starts: list[np.ndarray]
    pairs: list[np.ndarray]
    window: int

    @classmethod
    def from_recordings(cls, recordings: list[Recording], window: int, step: int | None = None) -> WindowBank:
        from sslkit.recording import room_channels

        recs = [room_channels(r) for r in recordings]
        starts = [active_window_starts(r.audio, window, step or window // 2) for r in recs]
        pairs = [np.stack(np.triu_indices(r.n_mics, k=1), axis=1) for r in recs]
        keep = [i for i, s in enumerate(starts) if len(s)]
        return cls([recs[i] for i in keep], [starts[i] for i in keep], [pairs[i] for i in keep], window)

    def sample(self, batch: int, rng: np.random.Generator, c: float | None = None, max_sources: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A random batch of window pairs: x1, x2 of shape (B, window) and the true τ₁₂ in samples
        of up to ``max_sources`` sources active at the window centre, (B, max_sources), NaN-padded,
        at the speed of sound ``c`` (None: each recording's own, from its scene)."""
        rec_idx = rng.integers(len(self.recordings), size=batch)
        x1 = np.empty((batch, self.window), dtype=np.float32)
        x2 = np.empty_like(x1)
        tau = np.full((batch, max_sources), np.nan)
        for b, r in enumerate(rec_idx):  # one gather per item: B is small and windows are cut, not computed
            rec = self.recordings[r]
            start = self.starts[r][rng.integers(len(self.starts[r]))]
            i, j = self.pairs[r][rng.integers(len(self.pairs[r]))]
            if rng.random() < 0.5:
                i, j = j, i
            x1[b] = rec.audio[start : start + self.window, i]
            x2[b] = rec.audio[start : start + self.window, j]
            active = window_tdoas(rec, start, self.window, i, j, c)[:max_sources]
            tau[b, : len(active)] = active
        return x1, x2, tau


def active_window_starts(audio: np.ndarray, window: int, step: int) -> np.ndarray:
    """Start samples of windows (every ``step``) whose power is within ACTIVE_DB of the loudest."""
    n = audio.shape[0]
    if n < window:
        return np.zeros(0, dtype=int)
    starts = np.arange(0, n - window + 1, step)
    power = np.stack([np.mean(audio[s : s + window] ** 2) for s in starts])
    return starts[power >= power.max() * 10 ** (-ACTIVE_DB / 10)]


def window_tdoas(rec: Recording, start: int, window: int, i: int, j: int, c: float | None = None) -> np.ndarray:
    """True τᵢⱼ in samples at the window centre of every source active then, in source order, at the
    speed of sound ``c`` (None: the recording's, from its scene)."""
    c = speed_of_sound(rec.scene, c)
    positions = rec.sources.positions_at(np.array([(start + window / 2) / rec.fs]))[0]  # (S, 3), NaN where inactive
    active = positions[np.isfinite(positions).all(-1)]
    return range_differences(active, rec.mics, np.array([[i, j]]))[:, 0] / c * rec.fs
