"""NGCC-PHAT (Berg et al., Interspeech 2022): GCC-PHAT between learned, shift-equivariant features.

f (SincNet + CNN) filters each signal into L channels, GCC-PHAT correlates the two signals channel
by channel, and g (a CNN over the lag axis) turns the L correlations into logits over the
2·τmax+1 lags: regression via classification. With ``n_outputs`` K > 1 it predicts K lag
distributions for K sources (trained with ADPIT). Lags follow sslkit's convention: lag m means
τ₁₂ = t₁ − t₂ = m / fs.

Two designs (``design``):

- ``circular`` (sslkit's): every layer commutes with circular shifts (circular padding in f and g,
  circular correlation over N points with exact whitening), so a circular delay of one input by d
  samples moves the output by d lags exactly and a common shift of both inputs changes nothing
  (Lemma 5.1 of the thesis).
- ``reference``: the authors' network layer for layer (``NGCCPHAT.from_size("paper")``): SincNet
  cut-offs from 50 Hz, conv biases, BatchNorm momentum 0.05 in f whose last layer is linear,
  linear correlation over 2N points weighted by 1/(|G| + 10⁻³), and g zero-padded with dropout 0.5
  after each block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.gcc import centred, correlation, pair_products
from sslkit.models.sincnet import SincConv

PAIR_CHUNK_ELEMENTS = 2**23
"""Complex elements of pair cross-spectra processed at once in ``pair_correlations`` (64 MB): frames × pairs."""

CACHE_ELEMENTS = 2**21
"""Activations a stack of layers holds at once at inference on a CPU (8 MB in float32): the batch
goes through in parts that stay in the CPU's caches, faster than whole layers through memory."""

NARROW_CHANNELS = 16
"""Stacks of convolutions with fewer input channels than this run at inference on a CPU on pairs of
samples (``to_phases``): oneDNN fills its 16-lane vectors with channels, and 8 channels leave half of
each empty."""


DESIGNS = ("circular", "reference")
REFERENCE_EPSILON = 1e-3
"""The reference design's GCC weighting 1/(|G| + ε)."""
SIZES = {
    "paper": dict(n_sinc=128, sinc_len=1023, channels=128, head_channels=128),
    "small": dict(n_sinc=32, sinc_len=255, channels=32, head_channels=32),
    "seld": dict(n_sinc=32, sinc_len=255, channels=32, head_channels=16),
    "compact": dict(n_sinc=8, sinc_len=255, channels=8, head_channels=8),
}
"""``paper`` is Paper V's network; ``small`` trains in minutes on a CPU; ``seld`` is Paper VI's
multi-target network (L = 32 filters, C = 16 feature channels, which train-seld takes as its TDOA
features); ``compact`` (L = 8) costs a fraction of ``small`` at inference, for localization in real time on a CPU."""


class ConvBlock(nn.Module):
    """Conv1d → BatchNorm → LeakyReLU(0.2) → Dropout, any of them optional.

    ``padding`` ``circular`` keeps the block shift equivariant; ``zeros`` pads with zeros (the
    reference head); ``norm`` False makes it a plain (output) convolution with a bias. In
    inference the batch norm is folded into the convolution (one pass over the activations, not three).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, norm: bool = True, activate: bool = True, bias: bool = False,
                 padding: str = "circular", momentum: float = 0.1, dropout: float = 0.0):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, bias=bias or not norm)
        self.padding = "circular" if padding == "circular" else "constant"
        self.norm = nn.BatchNorm1d(c_out, momentum=momentum) if norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2) if activate else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The convolution, same length out as in; padded explicitly (oneDNN's own zero padding is slower than a padded copy)."""
        half = weight.shape[-1] // 2
        return F.conv1d(F.pad(x, (half, half), mode=self.padding), weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.drop(self.act(self.norm(self.convolve(x, self.conv.weight, self.conv.bias))))
        return self.activated(self.convolve(x, *self.inference_weights()))

    def unpadded(self, phases: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
        """The block at inference on inputs padded already, in channels-last memory (oneDNN's fastest
        layout) and ``phases`` samples per step (``to_phases``): (B, phases·C, 1, N / phases) →
        (B, phases·C', 1, (N − kernel + 1) / phases), same layout."""
        weight, bias = self.inference_weights()
        weight = phase_weights(weight, phases)
        bias = None if bias is None else bias.repeat(phases)
        return lambda x: self.activated(F.conv2d(x, weight, bias))

    def inference_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution's weight and bias at inference, with the batch norm (if any) folded in."""
        return folded_batch_norm(self.conv, self.norm) if isinstance(self.norm, nn.BatchNorm1d) else (self.conv.weight, self.conv.bias)

    def activated(self, y: torch.Tensor) -> torch.Tensor:
        """The activation at inference, in place (dropout is the identity then)."""
        return F.leaky_relu_(y, self.act.negative_slope) if isinstance(self.act, nn.LeakyReLU) else y


def run_blocks(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``blocks`` (ConvBlocks) on x (B, C, N) → (B, C', N). At inference with circular padding
    throughout, the input is padded once by the blocks' summed half-kernels and each convolution runs
    unpadded: every layer commutes with circular shifts, so the outputs are those of padding at every
    layer, without a padded copy of every layer's activations. On a CPU, narrow stacks
    (``NARROW_CHANNELS``) with odd kernels convolve two samples per step."""
    kernels = [block.conv.kernel_size[0] for block in blocks]
    halo = sum(k // 2 for k in kernels)
    if blocks.training or any(block.padding != "circular" for block in blocks) or halo >= x.shape[-1]:
        return blocks(x)
    narrow = x.device.type == "cpu" and min(block.conv.in_channels for block in blocks) < NARROW_CHANNELS and all(k % 2 for k in kernels)
    phases = 2 if narrow else 1
    layers = [block.unpadded(phases) for block in blocks]
    return in_cache_sized_parts(lambda part: run_unpadded(layers, part, halo, phases), x, x[0].numel())


def run_unpadded(layers: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, halo: int, phases: int) -> torch.Tensor:
    """``ConvBlock.unpadded(phases)`` layers on x (B, C, N) padded circularly by ``halo`` once → (B, C', N).
    The padded length is rounded up to whole steps of ``phases`` samples; the outputs the extra
    samples reach lie past the N kept (each output reads only the inputs at and after its own index)."""
    n = x.shape[-1]
    x = to_phases(circularly_padded_channels_last(x, halo, -(n + 2 * halo) % phases), phases)
    for layer in layers:
        x = layer(x)
    return from_phases(x, phases)[:, :, 0, :n].contiguous()


def circularly_padded_channels_last(x: torch.Tensor, halo: int, extra: int) -> torch.Tensor:
    """x (B, C, N) padded circularly by ``halo`` samples before and ``halo + extra`` after, as
    (B, C, 1, N + 2·halo + extra) in channels-last memory: three strided copies into one array
    (half the time of a padded copy and a change of layout). Needs halo + extra ≤ N."""
    b, c, n = x.shape
    samples = x.transpose(1, 2)
    out = x.new_empty(b, n + 2 * halo + extra, c)
    out[:, halo : halo + n] = samples
    out[:, :halo] = samples[:, n - halo :]
    out[:, halo + n :] = samples[:, : halo + extra]
    return out.transpose(1, 2)[:, :, None]


def to_phases(x: torch.Tensor, phases: int) -> torch.Tensor:
    """x (B, C, 1, N) in channels-last memory seen as (B, phases·C, 1, N / phases): channel p·C + c
    at step t is channel c at sample phases·t + p. A view of the same memory."""
    b, channels, _, n = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, 1, n // phases, phases * channels).permute(0, 3, 1, 2)


def from_phases(x: torch.Tensor, phases: int) -> torch.Tensor:
    """``to_phases`` undone: (B, phases·C, 1, N) in channels-last memory → (B, C, 1, phases·N), a view."""
    b, channels, _, n = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, 1, n * phases, channels // phases).permute(0, 3, 1, 2)


def phase_weights(weight: torch.Tensor, phases: int) -> torch.Tensor:
    """A convolution kernel (C', C, K) as one over ``phases`` samples per step (``to_phases``):
    (phases·C', phases·C, 1, ⌈(K + phases − 1) / phases⌉). Output phase p is the kernel delayed by
    p samples, read in steps of ``phases``."""
    c_out, c_in, k = weight.shape
    taps = -(-(k + phases - 1) // phases)
    delayed = torch.stack([F.pad(weight, (p, taps * phases - k - p)) for p in range(phases)])  # (phases, C', C, taps·phases)
    steps = delayed.reshape(phases, c_out, c_in, taps, phases)  # sample j·phases + q
    return steps.permute(0, 1, 4, 2, 3).reshape(phases * c_out, phases * c_in, 1, taps)


def cache_sized(x: torch.Tensor, row_elements: int) -> tuple[torch.Tensor, ...]:
    """x (B, ...) in parts along B whose activations, ``row_elements`` per row, are at most
    ``CACHE_ELEMENTS`` on a CPU; whole on a GPU, which wants large batches."""
    if x.device.type != "cpu":
        return (x,)
    return x.split(max(1, CACHE_ELEMENTS // row_elements))


def in_cache_sized_parts(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, row_elements: int) -> torch.Tensor:
    """``fn`` of x (B, ...) applied to its ``cache_sized`` parts, concatenated along B (the one
    part's result itself, not a copy, when x is one part)."""
    outputs = [fn(part) for part in cache_sized(x, row_elements)]
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def folded_batch_norm(conv: nn.Conv1d, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``conv`` followed by ``norm`` with its running statistics (inference)
    as one convolution: (C_out, C_in, K) and (C_out,)."""
    scale, shift = batch_norm_affine(norm)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return conv.weight * scale[:, None, None], bias


def batch_norm_affine(norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm`` at inference (running statistics) as x·scale + shift per channel: (C,) and (C,)."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


class NGCCPHAT(nn.Module):
    """Neural GCC-PHAT.

    Args:
        max_tau: largest |lag| in samples; the output has 2·max_tau + 1 classes.
        fs: sampling rate the model is trained for.
        n_sinc, sinc_len: SincNet filters and their (odd) length.
        channels: L, the channels of f (and of the correlations).
        feature_kernels: kernel sizes of f's conv layers after SincNet.
        head_channels, head_kernels: g's conv layers; the last maps to ``n_outputs`` channels.
        n_outputs: K lag distributions (1 for single-source TDOA).
    Shapes: forward(x1 (B, N), x2 (B, N)) → logits (B, K, 2·max_tau + 1).
    """

    def __init__(
        self,
        max_tau: int = 23,
        fs: int = 16000,
        n_sinc: int = 128,
        sinc_len: int = 1023,
        channels: int = 128,
        feature_kernels: Sequence[int] = (11, 9, 7),
        head_channels: int = 128,
        head_kernels: Sequence[int] = (11, 9, 7, 5),
        n_outputs: int = 1,
        design: str = "circular",
    ):
        super().__init__()
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
        self.config = dict(
            max_tau=max_tau, fs=fs, n_sinc=n_sinc, sinc_len=sinc_len, channels=channels,
            feature_kernels=list(feature_kernels), head_channels=head_channels, head_kernels=list(head_kernels),
            n_outputs=n_outputs, design=design,
        )
        self.max_tau, self.fs, self.n_outputs, self.design = max_tau, fs, n_outputs, design
        reference = design == "reference"
        momentum = 0.05 if reference else 0.1
        self.sinc = SincConv(n_sinc, sinc_len, fs, min_low_hz=50.0 if reference else 30.0)
        self.sinc_norm = nn.Sequential(nn.BatchNorm1d(n_sinc, momentum=momentum), nn.LeakyReLU(0.2))
        widths = [n_sinc] + [channels] * len(feature_kernels)
        self.features_cnn = nn.Sequential(*(
            ConvBlock(a, b, k, activate=not (reference and i == len(feature_kernels) - 1), bias=reference, momentum=momentum)
            for i, (a, b, k) in enumerate(zip(widths, widths[1:], feature_kernels))
        ))
        head_widths = [channels] + [head_channels] * (len(head_kernels) - 1) + [n_outputs]
        last = len(head_kernels) - 1
        self.head = nn.Sequential(*(
            ConvBlock(a, b, k, norm=i < last, activate=i < last, bias=reference, padding="zeros" if reference else "circular",
                      dropout=0.5 if reference and i < last else 0.0)
            for i, (a, b, k) in enumerate(zip(head_widths, head_widths[1:], head_kernels))
        ))

    @classmethod
    def from_size(cls, size: str, max_tau: int = 23, fs: int = 16000, n_outputs: int = 1, design: str | None = None) -> NGCCPHAT:
        """A network of a named size (``SIZES``); ``paper`` is the authors' reference design unless ``design`` says otherwise."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        return cls(max_tau=max_tau, fs=fs, n_outputs=n_outputs, design=design or ("reference" if size == "paper" else "circular"), **SIZES[size])

    @property
    def n_lags(self) -> int:
        return 2 * self.max_tau + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f: (B, N) signals, less their means (``centred``: SincNet's lowest band lets some DC
        through) → (B, L, N) filtered channels. At inference the signals go through in parts that
        keep each part's channels in the CPU's caches (``cache_sized``)."""
        if self.training:
            return self.filtered(x)
        return in_cache_sized_parts(self.filtered, x, self.sinc.n_filters * x.shape[-1])

    def filtered(self, x: torch.Tensor) -> torch.Tensor:
        """f on a batch at once: (B, N) → (B, L, N)."""
        x = centred(x)[:, None]
        if self.training:
            return run_blocks(self.features_cnn, self.sinc_norm(self.sinc(x)))
        norm, act = self.sinc_norm
        return run_blocks(self.features_cnn, F.leaky_relu_(self.sinc(x, *batch_norm_affine(norm)), act.negative_slope))

    @staticmethod
    def whitened_spectra(y: torch.Tensor) -> torch.Tensor:
        """Y/|Y| of each channel: PHAT of a cross-spectrum factorises into the two signals' phases.
        Always in float32 (under autocast too): half-precision FFTs are experimental in torch."""
        return torch.sgn(torch.fft.rfft(y.float()))

    def spectra(self, y: torch.Tensor) -> torch.Tensor:
        """What pairs of channels are correlated from: whitened N-point spectra (circular design), or
        plain 2N-point spectra, weighted per pair (reference design). (..., N) → (..., K)."""
        if self.design == "circular":
            return self.whitened_spectra(y)
        return torch.fft.rfft(y.float(), n=2 * y.shape[-1])

    def correlate(self, cross: torch.Tensor, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """GCC-PHAT at lags −τmax…τmax from the cross-spectrum S₁S₂* of two signals' ``spectra`` (n
        samples each): circular over n points, whitened already; or linear over 2n points, weighted
        by 1/(|S₁S₂*| + ε) (reference design). (..., K) → (..., 2τmax+1), written into ``out`` when given."""
        if self.design == "circular":
            return correlation(cross, n, self.max_tau, out=out)
        return correlation(cross / (cross.abs() + REFERENCE_EPSILON), 2 * n, self.max_tau, out=out)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        s1, s2 = self.spectra(self.features(torch.cat([x1, x2]))).chunk(2)
        return run_blocks(self.head, self.correlate(s1 * s2.conj(), x1.shape[-1]))

    def pair_correlations(self, frames: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """The L GCC-PHATs of many pairs of one frame batch: each mic is filtered and transformed
        once, and frames (with many mics, also pairs) go through the pair cross-spectra in chunks
        that bound memory.

        Shape: frames (F, M, N), pairs (P, 2) → (F, P, L, 2·τmax+1).
        """
        f, m, n = frames.shape
        spectra = self.spectra(self.features(frames.reshape(f * m, n)))
        spectra = spectra.reshape(f, m, -1, spectra.shape[-1])
        per_pair = spectra.shape[2] * spectra.shape[3]
        pair_step = max(1, min(len(pairs), PAIR_CHUNK_ELEMENTS // per_pair))  # many mics: a frame's pairs in parts too
        frame_step = max(1, PAIR_CHUNK_ELEMENTS // (pair_step * per_pair))
        pairs = pairs.cpu().numpy()
        out = spectra.new_empty(f, len(pairs), spectra.shape[2], self.n_lags, dtype=spectra.real.dtype)
        for start in range(0, f, frame_step):
            block = spectra[start : start + frame_step]
            for p in range(0, len(pairs), pair_step):
                self.correlate(pair_products(block, pairs[p : p + pair_step]), n, out=out[start : start + frame_step, p : p + pair_step])
        return out

    def logits_from_correlations(self, corr: torch.Tensor) -> torch.Tensor:
        """g over correlations (F, P, L, lags) → logits (F, P, K, lags)."""
        f, p = corr.shape[:2]
        return run_blocks(self.head, corr.flatten(0, 1)).reshape(f, p, self.n_outputs, self.n_lags)

    def pair_logits(self, frames: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Logits for many pairs of one frame batch. Shape: frames (F, M, N), pairs (P, 2) → (F, P, K, 2·τmax+1)."""
        return self.in_frame_blocks(frames, pairs, self.logits_from_correlations)

    def symmetric_pair_probabilities(self, frames: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Lag distributions of many pairs, mirror-averaged (``mirror_averaged``): the distributions of
        (j, i) are exactly those of (i, j) mirrored. frames (F, M, N), pairs (P, 2) → (F, P, K, 2·τmax+1).
        """
        def probabilities(corr: torch.Tensor) -> torch.Tensor:
            return self.mirror_averaged(corr, lambda c: torch.softmax(self.logits_from_correlations(c).float(), dim=-1))

        return self.in_frame_blocks(frames, pairs, probabilities)

    def symmetric_pair_features(self, frames: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Paper VI's TDOA features: the channels g has before its last layer (C = head_channels),
        mirror-averaged. frames (F, M, N), pairs (P, 2) → (F, P, C, 2·τmax+1)."""

        def hidden(corr: torch.Tensor) -> torch.Tensor:
            return run_blocks(self.head[:-1], corr.flatten(0, 1)).reshape(*corr.shape[:2], -1, self.n_lags)

        return self.in_frame_blocks(frames, pairs, lambda corr: self.mirror_averaged(corr, hidden))

    def in_frame_blocks(self, frames: torch.Tensor, pairs: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` of the pair correlations (F', P, L, lags) of a few frames at a time (``cache_sized``),
        concatenated over frames: each block's correlations are read by ``fn`` while they are in the
        caches, and the whole batch's never take memory at once. frames (F, M, N) → (F, ...)."""
        per_frame = len(pairs) * self.config["channels"] * self.n_lags
        return in_cache_sized_parts(lambda block: fn(self.pair_correlations(block, pairs)), frames, per_frame)

    @staticmethod
    def mirror_averaged(corr: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` of pair correlations (F, P, L, lags), averaged with the mirrored ``fn`` of the reversed
        pairs (whose correlations are those of (i, j) reversed in lag): exactly mirror-symmetric."""
        return (fn(corr) + fn(corr.flip(-1)).flip(-1)) / 2


def lag_targets(tau_samples: torch.Tensor, max_tau: int, sigma: float = 0.0) -> torch.Tensor:
    """Class targets for true delays (B,) in samples: one-hot at the rounded lag, or a Gaussian of
    width ``sigma`` samples (label smoothing). Returns (B, 2·max_tau + 1) distributions."""
    lags = torch.arange(-max_tau, max_tau + 1, device=tau_samples.device, dtype=tau_samples.dtype)
    if sigma <= 0:
        idx = tau_samples.round().clamp(-max_tau, max_tau).long() + max_tau
        return F.one_hot(idx, 2 * max_tau + 1).to(tau_samples.dtype)
    weights = torch.exp(-0.5 * ((lags[None] - tau_samples[:, None]) / sigma) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def multi_lag_targets(tau: torch.Tensor, max_tau: int, n_tracks: int, sigma: float = 0.0) -> torch.Tensor:
    """ADPIT dummy-track targets over lag classes for up to ``n_tracks`` sources per item.

    tau (B, S) true delays in samples, NaN where a source is inactive → (B, 1, N(N+1)/2, 1+L, 1)
    with L = 2·max_tau + 1: group M (M active sources) holds their lag distributions.
    """
    from sslkit.models.adpit import dummy_index, n_dummy_tracks

    b = tau.shape[0]
    tau = tau[:, :n_tracks]
    n_lags = 2 * max_tau + 1
    active = ~torch.isnan(tau)
    m = active.sum(dim=1)
    dists = lag_targets(torch.nan_to_num(tau).flatten(), max_tau, sigma).reshape(b, tau.shape[1], n_lags)
    target = torch.zeros(b, n_dummy_tracks(n_tracks), 1 + n_lags, dtype=dists.dtype, device=tau.device)
    order = torch.argsort((~active).int(), dim=1, stable=True)  # active sources first
    for group in range(1, n_tracks + 1):
        rows = m == group
        for e in range(group):
            src = order[rows, e]
            target[rows, dummy_index(group, e), 0] = 1.0
            target[rows, dummy_index(group, e), 1:] = dists[rows, src]
    return target[:, None, :, :, None]
