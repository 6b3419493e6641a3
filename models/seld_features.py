"""SELD input features: log-mel spectrograms of every mic plus GCC-PHAT of every mic pair, on the
DCASE2024 baseline's grid (40 ms windows, 20 ms hop, 64 mel bands; 64 GCC lags)."""

from __future__ import annotations

import math

import numpy as np
import torch

from sslkit.gcc import pair_index


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_filterbank(n_fft: int, n_mels: int, fs: int, fmin: float = 50.0, fmax: float | None = None) -> torch.Tensor:
    """Triangular HTK-mel filters, shape (n_mels, n_fft // 2 + 1), each with unit peak."""
    fmax = fmax or fs / 2
    edges_mel = np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.linspace(0, fs / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lower) / (centre - lower)
    down = (upper - freqs) / (upper - centre)
    return torch.as_tensor(np.clip(np.minimum(up, down), 0, None), dtype=torch.float32)


class SeldFeatures(torch.nn.Module):
    """audio (B, C, T) → features (B, C + C(C−1)/2, frames, n_mels): log-mels then pair GCC-PHATs.

    Args:
        fs: sample rate; window and hop are 40 ms and 20 ms (power-of-two FFT).
        n_mels: mel bands, also the number of GCC lags kept (−n/2 … n/2 − 1).
        gcc: False gives log-mels only.
    """

    def __init__(self, fs: int = 24000, n_mels: int = 64, gcc: bool = True):
        super().__init__()
        self.fs, self.n_mels, self.use_gcc = fs, n_mels, gcc
        self.hop = int(round(0.02 * fs))
        self.n_fft = 2 ** math.ceil(math.log2(0.04 * fs))
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mel", mel_filterbank(self.n_fft, n_mels, fs), persistent=False)

    def channels(self, n_mics: int) -> int:
        """Feature channels for ``n_mics`` microphones: C log-mels, plus C(C−1)/2 GCC-PHATs with ``gcc``."""
        return n_mics + (n_mics * (n_mics - 1) // 2 if self.use_gcc else 0)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        logmel, lags = self.with_mirror_lag(audio)
        return logmel if lags is None else torch.cat([logmel, lags[..., :-1]], dim=1)

    def with_mirror_lag(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-mels (B, C, frames, n_mels) and GCC-PHAT lags −n/2 … n/2 (B, P, frames, n_mels + 1): one
        lag more than the model takes, so that a reversed pair is exactly a flip (``swap_channel_features``)."""
        b, c, _ = audio.shape
        spec = torch.stft(audio.flatten(0, 1), self.n_fft, self.hop, window=self.window, return_complex=True)
        spec = spec.reshape(b, c, *spec.shape[1:]).transpose(2, 3)  # (B, C, frames, K)
        logmel = torch.log(torch.einsum("bctk,mk->bctm", spec.abs() ** 2, self.mel) + 1e-8)
        if not self.use_gcc:
            return logmel, None
        i, j = torch.triu_indices(c, c, offset=1)
        whitened = torch.sgn(spec)
        corr = torch.fft.irfft(whitened[:, i] * whitened[:, j].conj(), n=self.n_fft)  # (B, P, frames, n_fft)
        half = self.n_mels // 2
        return logmel, torch.cat([corr[..., -half:], corr[..., : half + 1]], dim=-1)


def swap_channel_features(logmel: torch.Tensor, lags: torch.Tensor | None, perm: np.ndarray) -> torch.Tensor:
    """Model input (C + P, frames, n_mels) of the recording whose channel a is the original channel
    perm[a], from the original's ``SeldFeatures.with_mirror_lag`` output (one clip): no recomputation."""
    if lags is None:
        return logmel[perm]
    return torch.cat([logmel[perm], swap_pairs(lags, perm)[..., :-1]])


def swap_pairs(pairs: torch.Tensor, perm: np.ndarray) -> torch.Tensor:
    """Pair features (..., P, :, lags) of channels i < j (pair axis −3, lags symmetric about 0),
    rearranged for the recording whose channel a is the original channel perm[a]: pair (a, b) takes
    pair (perm[a], perm[b]), mirrored in lag when perm[a] > perm[b]."""
    a, b = np.triu_indices(len(perm), 1)
    src_a, src_b = np.asarray(perm)[a], np.asarray(perm)[b]
    picked = pairs[..., pair_index(len(perm))[src_a, src_b], :, :]
    mirrored = torch.as_tensor(src_a > src_b, device=pairs.device)[:, None, None]
    return torch.where(mirrored, picked.flip(-1), picked)


class NgccSeldFeatures(torch.nn.Module):
    """Frozen multi-target NGCC-PHAT lag distributions on the log-mel frame grid (Paper VI).

    For every 20 ms frame a ``window``-sample excerpt centred on it goes through NGCC-PHAT for all
    mic pairs i < j; as in Paper VI, the features are the C channels over 2τmax+1 lags that the
    pre-trained network has before its last layer (which maps them to the K tracks' lag logits).
    Each pair's features are averaged with the mirrored ones for (j, i), so that the features of
    (j, i) are exactly those of (i, j) mirrored (channel swaps then reuse computed features:
    ``swap_pair_features``). Frames go through the network in chunks of ``chunk`` to bound memory.
    Shape: audio (B, M, T) → (B, frames, P·C·(2τmax+1)).
    """

    def __init__(self, ngcc: torch.nn.Module, fs: int = 24000, window: int = 1024, chunk: int = 512):
        super().__init__()
        self.ngcc = ngcc.eval().requires_grad_(False)
        self.hop, self.window, self.chunk = int(round(0.02 * fs)), window, chunk

    @property
    def n_channels(self) -> int:
        """C, the feature channels per mic pair."""
        return self.ngcc.config["head_channels"]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        b, c, _ = audio.shape
        padded = torch.nn.functional.pad(audio, (self.window // 2, self.window // 2))
        frames = padded.unfold(-1, self.window, self.hop).permute(0, 2, 1, 3).flatten(0, 1)  # (B·frames, C, window)
        pairs = torch.triu_indices(c, c, offset=1, device=audio.device).T
        with torch.no_grad():
            feats = torch.cat([self.ngcc.symmetric_pair_features(block, pairs) for block in frames.split(self.chunk)])
        return feats.reshape(b, -1, len(pairs) * self.n_channels * self.ngcc.n_lags)


def swap_pair_features(features: torch.Tensor, perm: np.ndarray, n_lags: int) -> torch.Tensor:
    """``NgccSeldFeatures`` output (..., P·C·lags) rearranged for the channel swap ``perm`` (see
    ``swap_pairs``). Matches recomputing mirror-symmetric features on the swapped audio."""
    pairs = features.reshape(*features.shape[:-1], len(perm) * (len(perm) - 1) // 2, -1, n_lags)
    return swap_pairs(pairs, perm).reshape(features.shape)
