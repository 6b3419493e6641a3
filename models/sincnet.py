"""SincNet front end (Ravanelli & Bengio 2018): band-pass filters with learnable cut-offs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def hz_to_mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700 * (10 ** (mel / 2595) - 1)


FFT_MIN_KERNEL = 64
"""Kernels at least this long are applied by FFT (10× faster for SincNet's 255–1023 taps)."""


class SincConv(nn.Module):
    """1-D convolution whose kernels are windowed band-pass sincs; only cut-offs are learned.

    Each filter is g[n] = 2f₂·sinc(2πf₂n) − 2f₁·sinc(2πf₁n) with a Hamming window, f₁ = |low| +
    min_low, f₂ = f₁ + |band| + min_band, initialised mel-spaced. Circular padding keeps the
    layer exactly equivariant to circular time shifts.
    Shape: (B, 1, N) → (B, n_filters, N).
    """

    def __init__(self, n_filters: int, kernel_size: int, fs: int, min_low_hz: float = 30.0, min_band_hz: float = 50.0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("SincConv kernel_size must be odd")
        self.n_filters, self.kernel_size, self.fs = n_filters, kernel_size, fs
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        high = fs / 2 - (min_low_hz + min_band_hz)
        edges = mel_to_hz(torch.linspace(hz_to_mel(min_low_hz), hz_to_mel(high), n_filters + 1))
        self.low_hz = nn.Parameter((edges[:-1] - min_low_hz).unsqueeze(1))
        self.band_hz = nn.Parameter(torch.diff(edges).unsqueeze(1))
        half = (kernel_size - 1) // 2
        self.register_buffer("n", 2 * math.pi * torch.arange(-half, 0).float().unsqueeze(0) / fs, persistent=False)
        self.register_buffer("window", torch.hamming_window(kernel_size, periodic=False)[:half].unsqueeze(0), persistent=False)

    def filters(self) -> torch.Tensor:
        """The band-pass kernels, shape (n_filters, 1, kernel_size), unit peak gain at the centre."""
        low = self.min_low_hz + self.low_hz.abs()
        high = (low + self.min_band_hz + self.band_hz.abs()).clamp(max=self.fs / 2)
        band = high - low
        left = (torch.sin(high * self.n) - torch.sin(low * self.n)) / (self.n / 2) * self.window  # (F, half)
        centre = 2 * band
        kernel = torch.cat([left, centre, left.flip(1)], dim=1) / (2 * band)
        return kernel.unsqueeze(1)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Each filter's output, times ``scale`` plus ``shift`` (n_filters,) when given: a batch norm at
        inference folded into the filters."""
        half = (self.kernel_size - 1) // 2
        n = x.shape[-1]
        kernel = self.filters() if scale is None else self.filters() * scale[:, None, None]
        if self.kernel_size < FFT_MIN_KERNEL or n < self.kernel_size:
            return F.conv1d(F.pad(x, (half, half), mode="circular"), kernel, shift)
        # circular convolution by FFT: the kernels are symmetric, so correlation = convolution
        circular = torch.zeros(len(kernel), n, device=x.device, dtype=kernel.dtype)
        circular[:, : half + 1] = kernel[:, 0, half:]
        circular[:, n - half :] = kernel[:, 0, :half]
        spectra = torch.fft.rfft(x) * torch.fft.rfft(circular)[None]
        if shift is not None:
            spectra[..., 0] += n * shift  # a constant is n times itself at 0 Hz
        return torch.fft.irfft(spectra, n=n)
