"""Sensor and ambient noise fields: independent white noise, spherically diffuse noise, babble."""

from __future__ import annotations

import numpy as np

from sslkit.geometry import SPEED_OF_SOUND
from sslkit.sims.signals import bundled_speech, load_mono

DIFFUSE_NFFT = 512
BABBLE_TALKERS = 6


def make_noise(kind: str, mics: np.ndarray, n: int, fs: int, rng: np.random.Generator, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """Unit-power noise for each mic, shape (n, n_mics).

    ``white``: independent Gaussian noise per mic. ``diffuse``: Gaussian noise with the
    spherically isotropic coherence sinc(2πfd/c) between mics. ``babble``: a diffuse field made
    from sums of speech clips instead of Gaussian noise.
    """
    m = len(mics)
    if kind == "white":
        x = rng.standard_normal((n, m))
    else:
        base = rng.standard_normal((n, m)) if kind == "diffuse" else _babble(rng, n, m, fs)
        x = _impose_diffuse_coherence(base, mics, fs, c)
    return x / np.sqrt(np.mean(x**2, axis=0, keepdims=True) + 1e-20)


def _babble(rng: np.random.Generator, n: int, m: int, fs: int) -> np.ndarray:
    """m independent babble signals: each the sum of several randomly offset speech clips."""
    clips = [load_mono(p, fs) for p in bundled_speech("train")]
    out = np.zeros((n, m))
    for ch in range(m):
        for _ in range(BABBLE_TALKERS):
            clip = np.resize(clips[int(rng.integers(len(clips)))], n + fs)
            start = int(rng.integers(fs))
            out[:, ch] += clip[start:start + n] / (np.std(clip) + 1e-12)
    return out


def diffuse_coherence(mics: np.ndarray, freqs: np.ndarray, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """Spherically isotropic coherence matrices, shape (n_freqs, n_mics, n_mics)."""
    dist = np.linalg.norm(mics[:, None] - mics[None], axis=-1)
    return np.sinc(2 * freqs[:, None, None] * dist[None] / c)  # np.sinc(x) = sin(πx)/(πx)


def _impose_diffuse_coherence(x: np.ndarray, mics: np.ndarray, fs: int, c: float) -> np.ndarray:
    """Mix independent channels per STFT bin so that their coherence follows the diffuse model."""
    from scipy.signal import istft, stft

    n = x.shape[0]
    freqs, _, spec = stft(x.T, fs=fs, nperseg=DIFFUSE_NFFT)  # (M, F, frames)
    gamma = diffuse_coherence(mics, freqs, c)
    w, v = np.linalg.eigh(gamma)
    mixing = v * np.sqrt(np.clip(w, 0, None))[:, None, :]  # (F, M, M): mixing @ mixing.T = gamma
    mixed = np.einsum("fij,jft->ift", mixing, spec)
    _, y = istft(mixed, fs=fs, nperseg=DIFFUSE_NFFT)
    return y[:, :n].T
