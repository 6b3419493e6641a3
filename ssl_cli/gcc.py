"""Batched generalized cross-correlation (GCC-PHAT and variants) and peak picking.

Sign convention (used everywhere in sslkit): for mic pair (i, j) the TDOA is
τᵢⱼ = tᵢ − tⱼ = (‖s − rᵢ‖ − ‖s − rⱼ‖) / c, so the correlation Rᵢⱼ[m] = Σₙ xᵢ[n] xⱼ[n − m] peaks at
m = τᵢⱼ·fs. Everything is vectorized over frames × pairs with torch (CPU or CUDA).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from sslkit.errors import UserError
from sslkit.options import BATCH_FRAMES, SILENCE_DB

WEIGHTINGS = ("phat", "beta-phat", "cc")
EPS = 1e-12
LAG_MARGIN = 2
"""Samples added to the geometric lag bound ‖rᵢ − rⱼ‖·fs / c (sub-sample error, sync)."""


def frame_audio(audio: torch.Tensor, frame: int, hop: int) -> torch.Tensor:
    """Cut (n_samples, n_mics) audio into frames, shape (n_frames, n_mics, frame)."""
    if audio.shape[0] < frame:
        raise UserError(f"the audio ({audio.shape[0]} samples) is shorter than one frame ({frame} samples)")
    return audio.T.unfold(1, frame, hop).permute(1, 0, 2)


def centred(frames: torch.Tensor) -> torch.Tensor:
    """Each frame (..., L) less its mean: a DC offset (common on cheap converters) carries no delay,
    but a zero-padded frame spreads it over the low frequencies, the same on every mic, where
    whitening makes it a peak at lag 0."""
    return frames - frames.mean(dim=-1, keepdim=True)


def frame_times(n_frames: int, frame: int, hop: int, fs: int) -> np.ndarray:
    """Centre time (s) of each frame."""
    return (np.arange(n_frames) * hop + frame / 2) / fs


def mic_pairs(spec: str, n_mics: int) -> np.ndarray:
    """Parse ``all``, ``ref:K`` (K paired with every other mic) or ``1-2,1-3`` (1-based) → (P, 2) 0-based."""
    spec = spec.strip()
    if spec == "all":
        i, j = np.triu_indices(n_mics, k=1)
        pairs = np.stack([i, j], axis=1)
    elif spec.startswith("ref:"):
        try:
            ref = int(spec[4:]) - 1
        except ValueError:
            raise UserError(f"pairs '{spec}': expected ref:K with a mic number K") from None
        if not 0 <= ref < n_mics:
            raise UserError(f"pairs '{spec}': mic {ref + 1} does not exist ({n_mics} mics)")
        pairs = np.array([[ref, j] for j in range(n_mics) if j != ref])
    else:
        try:
            pairs = np.array([[int(a) - 1, int(b) - 1] for a, b in (p.split("-") for p in spec.split(","))])
        except ValueError:
            raise UserError(f"pairs '{spec}': expected all, ref:K or a list like 1-2,1-3") from None
        if pairs.min() < 0 or pairs.max() >= n_mics or np.any(pairs[:, 0] == pairs[:, 1]):
            raise UserError(f"pairs '{spec}': mic numbers must be distinct and between 1 and {n_mics}")
        if len(np.unique(np.sort(pairs, axis=1), axis=0)) < len(pairs):
            raise UserError(f"pairs '{spec}': a pair is listed twice (i-j and j-i count as the same pair)")
    if len(pairs) == 0:
        raise UserError("need at least two microphones to form a pair")
    return pairs


def pair_index(n_mics: int) -> np.ndarray:
    """(M, M) table: entry [i, j] = [j, i] is the position of the pair {i, j} in the i < j order of
    ``np.triu_indices`` (``mic_pairs("all")``); the diagonal is unused."""
    i, j = np.triu_indices(n_mics, k=1)
    table = np.zeros((n_mics, n_mics), dtype=np.int64)
    table[i, j] = table[j, i] = np.arange(len(i))
    return table


def weighting_exponent(weighting: str, beta: float = 0.7) -> float:
    """β of the weighting 1/|XᵢXⱼ*|^β: 1 for PHAT, ``beta`` for β-PHAT, 0 for plain cross-correlation."""
    exponents = {"phat": 1.0, "beta-phat": beta, "cc": 0.0}
    if weighting not in exponents:
        raise UserError(f"unknown weighting '{weighting}' (choose from {', '.join(WEIGHTINGS)})")
    if not 0 <= exponents[weighting] <= 1:
        raise UserError(f"beta = {beta}: β-PHAT's exponent lies from 0 (plain correlation) to 1 (PHAT)")
    return exponents[weighting]


def gcc_fft_length(frame: int, max_lag: int) -> int:
    """FFT length for linear correlation of ``frame``-sample frames up to ``max_lag`` lags: the
    smallest 2^a·3^b·5^c at least frame + max_lag (fast for every FFT library; scipy's
    ``next_fast_len(real=True)`` without the second that importing scipy.fft takes)."""
    target = frame + max_lag
    best = 2 ** math.ceil(math.log2(target))
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            best = min(best, power35 * 2 ** max(0, math.ceil(math.log2(target / power35))))
            power35 *= 3
        power5 *= 5
    return best


def gcc(
    frames: torch.Tensor, pairs: np.ndarray, max_lag: int, weighting: str = "phat", beta: float = 0.7, upsample: int = 1, band: float = 1.0,
    taper: float = 0.0,
) -> torch.Tensor:
    """GCC of every frame and pair at lags −max_lag…max_lag samples (in steps of 1/upsample).

    The weighting 1/|XᵢXⱼ*|^β factorises per mic, so each mic's spectrum is transformed and
    whitened once and pairs only multiply. Frames are zero-padded to the first fast FFT length
    ≥ L + max_lag, so the lags needed are those of the linear (not circular) correlation;
    ``upsample`` > 1 interpolates the correlation by zero-padding the spectrum; ``band`` and
    ``taper``: see :func:`cross_spectra`.
    Shape: frames (F, M, L) → (F, P, 2·max_lag·upsample + 1).
    """
    n_fft = gcc_fft_length(frames.shape[-1], max_lag)
    cross = cross_spectra(frames, pairs, n_fft, weighting, beta, band, taper)
    return correlation(cross, n_fft, max_lag, upsample)


def tapered_window(n: int, taper: float, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The periodic Tukey window of ``n`` samples whose raised-cosine ramps cover the share ``taper``
    of it, half at each end: 1 is the Hann window, 0 the rectangular one. Shape (n,)."""
    if taper <= 0 or n <= 1:  # rectangular; a single sample is kept whole
        return torch.ones(n, dtype=dtype, device=device)
    edge = torch.arange(n, dtype=torch.float64) / n
    edge = torch.minimum(edge, 1 - edge)  # from the nearer end, as a share of the (periodic) window
    ramp = 0.5 * (1 - torch.cos(2 * math.pi * edge / taper))
    return torch.where(edge < taper / 2, ramp, 1.0).to(dtype=dtype, device=device)


def cross_spectra(frames: torch.Tensor, pairs: np.ndarray, n_fft: int, weighting: str = "phat", beta: float = 0.7,
                  band: float = 1.0, taper: float = 0.0) -> torch.Tensor:
    """Weighted cross-spectra XᵢXⱼ*/|XᵢXⱼ*|^β of every frame and pair, (F, M, L) → (F, P, n_fft//2 + 1),
    of the frames less their means (:func:`centred`) under the window :func:`tapered_window` with
    ramps over the share ``taper`` of the frame (0: none); zero at 0 Hz, and above the share
    ``band`` of the spectrum up to the Nyquist frequency (1: all of it).

    A steady tone on every channel (mains hum picked up by the wiring, at delay 0) leaks from a
    rectangular frame over dozens of frequencies around each of its lines, and whitening weighs
    each of them as much as the speech; under a Hann window (``taper`` 1) it stays within a few.
    A Hann window also halves what each frame holds, which costs accuracy per frame in reverberant
    rooms; ramps at the edges only (``EDGE_TAPER``, the default) keep most of it and soften the
    frame's cut (benchmarks/reverb_sweep.py and degraded_audio.py measure the three).
    """
    frames = centred(frames)
    if taper > 0:
        frames.mul_(tapered_window(frames.shape[-1], taper, frames.dtype, frames.device))  # in place: centred made a copy
    spec = torch.fft.rfft(frames, n=n_fft)  # (F, M, K)
    exponent = weighting_exponent(weighting, beta)
    if exponent == 1.0:
        spec = torch.sgn(spec)  # z/|z| (0 at 0): PHAT, 3× faster than dividing
    elif exponent:
        spec = spec / (spec.abs() + EPS) ** exponent
    spec[..., 0] = 0  # what is left of the DC is rounding, which whitening would make as loud as any frequency
    if band < 1.0:
        spec[..., math.floor(band * (n_fft // 2)) + 1 :] = 0
    return pair_products(spec, pairs)


def pair_products(spec: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
    """Xᵢ·Xⱼ* of every pair (i, j): spec (F, M, ..., K) → (F, P, ..., K). Pairs sharing their first mic (in
    runs, as ``mic_pairs`` lists them) are one broadcast product each, written into its slice of the
    result and reading a slice of the second mics where they are consecutive, so no copy of the
    spectra is gathered per pair."""
    conj = spec.conj().resolve_conj()  # a lazy conj is 3× slower
    products = spec.new_empty(spec.shape[0], len(pairs), *spec.shape[2:])
    starts = np.concatenate([[0], np.flatnonzero(np.diff(pairs[:, 0])) + 1, [len(pairs)]])
    for start, stop in zip(starts[:-1], starts[1:]):
        i, j = int(pairs[start, 0]), pairs[start:stop, 1]
        consecutive = bool(np.all(np.diff(j) == 1))
        others = conj[:, int(j[0]) : int(j[-1]) + 1] if consecutive else conj[:, torch.as_tensor(j, device=spec.device)]
        torch.mul(spec[:, i : i + 1], others, out=products[:, start:stop])
    return products


def correlation(cross: torch.Tensor, n_fft: int, max_lag: int, upsample: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-spectra (..., K) → correlations at lags −max_lag…max_lag in steps of 1/upsample (..., 2·max_lag·upsample + 1),
    written into ``out`` when given.

    The inverse FFT of the (zero-padded) spectrum, or, when few lags are needed (small arrays),
    the same sums evaluated at those lags only (:func:`correlation_at_lags`), whichever costs less.
    """
    n_lags = 2 * max_lag * upsample + 1
    if 2 * cross.shape[-1] * n_lags < 5 * n_fft * upsample * math.log2(n_fft * upsample):
        return correlation_at_lags(cross, n_fft, max_lag, upsample, out)
    r = torch.fft.irfft(cross, n=n_fft * upsample)
    half = max_lag * upsample
    negative, positive = r[..., r.shape[-1] - half :], r[..., : half + 1]  # negative lags wrap to the end
    if out is None:  # differentiable (NGCC-PHAT trains through it)
        joined = torch.cat([negative, positive], dim=-1)
        return joined.mul_(upsample) if upsample != 1 else joined
    torch.mul(negative, upsample, out=out[..., :half])
    torch.mul(positive, upsample, out=out[..., half:])
    return out


def correlation_at_lags(cross: torch.Tensor, n_fft: int, max_lag: int, upsample: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
    """What :func:`correlation` returns, as one real matrix product with the inverse DFT's cosines
    and sines at the wanted lags only: r[n] = Σₖ wₖ (Re Xₖ cos θₖₙ − Im Xₖ sin θₖₙ) / n_fft with
    θₖₙ = 2πkn / (n_fft·upsample), wₖ = 2 except the zero bin (and the Nyquist bin without upsampling)."""
    basis = inverse_dft_at_lags(cross.shape[-1], n_fft, max_lag, upsample, cross.real.dtype, str(cross.device))
    return torch.matmul(torch.view_as_real(cross.resolve_conj()).flatten(-2), basis, out=out)


@functools.lru_cache(maxsize=8)
def inverse_dft_at_lags(n_bins: int, n_fft: int, max_lag: int, upsample: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """The (2K, L) matrix of :func:`correlation_at_lags`: rows wₖcos θₖₙ / n_fft and −wₖsin θₖₙ / n_fft
    interleaved, as the real and imaginary parts of a complex tensor's bins lie in memory."""
    k = torch.arange(n_bins, device=device, dtype=torch.float64)
    lags = torch.arange(-max_lag * upsample, max_lag * upsample + 1, device=device, dtype=torch.float64)
    theta = 2 * math.pi * k[:, None] * lags[None] / (n_fft * upsample)  # (K, L)
    weight = torch.full_like(k, 2.0)
    weight[0] = 1.0
    if upsample == 1 and n_fft % 2 == 0:
        weight[-1] = 1.0
    return torch.stack([torch.cos(theta), -torch.sin(theta)], dim=1).mul(weight[:, None, None] / n_fft).flatten(0, 1).to(dtype)


CORRELATION_BUDGET_BYTES = 64 * 2**20
"""Memory the spectra and correlations of one batch of frames may take (many mics: fewer frames per
batch). Kept small: glibc hands buffers of a few MB back to the process from one batch to the next,
where larger ones go back to the system and cost a page fault per 4 kB when the next batch touches
them again (benchmarks/tdoa_speed.py, without :func:`sslkit.keep_freed_memory`)."""


def correlation_batch(n_pairs: int, n_fft: int, upsample: int) -> int:
    """Frames per batch so that their cross-spectra and upsampled correlations of ``n_pairs`` pairs
    (about 3 complex copies of n_fft·upsample values each) fit ``CORRELATION_BUDGET_BYTES``; 1 to ``BATCH_FRAMES``."""
    per_frame = n_pairs * n_fft * upsample * 8 * 3
    return int(max(1, min(BATCH_FRAMES, CORRELATION_BUDGET_BYTES // per_frame)))


def band_share(max_freq: float | None, fs: float) -> float:
    """``max_freq`` (Hz; None: the whole band) as :func:`cross_spectra`'s ``band``, the share of the
    spectrum up to the Nyquist frequency that is kept."""
    return 1.0 if max_freq is None else max_freq / (fs / 2)


def frame_correlations(frames: torch.Tensor, pairs: np.ndarray, n_fft: int, max_lag: int, upsample: int,
                       weighting: str = "phat", beta: float = 0.7, band: float = 1.0, taper: float = 0.0) -> torch.Tensor:
    """Weighted correlations (F, P, 2·max_lag·upsample + 1) of frames (F, M, L), in ``correlation_batch`` frames at a time
    (``band``, ``taper``: see :func:`cross_spectra`)."""
    step = correlation_batch(len(pairs), n_fft, upsample)
    correlations = frames.new_empty(len(frames), len(pairs), 2 * max_lag * upsample + 1)
    for s in range(0, len(frames), step):
        correlation(cross_spectra(frames[s : s + step], pairs, n_fft, weighting, beta, band, taper), n_fft, max_lag, upsample,
                    out=correlations[s : s + step])
    return correlations.float()


def mean_correlation(frames: torch.Tensor, active: torch.Tensor, pairs: np.ndarray, n_fft: int, max_lag: int, upsample: int,
                     weighting: str = "phat", beta: float = 0.7, band: float = 1.0, taper: float = 0.0) -> torch.Tensor:
    """The mean over the ``active`` frames of their weighted correlations, as the correlation of the
    mean cross-spectrum (the correlation is linear in it): one inverse transform per pair instead of
    one per frame and pair. frames (F, M, L), active (F,) bool → (1, P, 2·max_lag·upsample + 1)."""
    compute = lambda lo, hi: cross_spectra(frames[lo:hi], pairs, n_fft, weighting, beta, band, taper)  # noqa: E731
    _, mean_cross = next(window_average(compute, len(frames), active, None, correlation_batch(len(pairs), n_fft, upsample)))
    return correlation(mean_cross, n_fft, max_lag, upsample).float()


def window_frames(window_s: float | None, hop: int, fs: int, n_frames: int) -> int | None:
    """Frames in an integration window of ``window_s`` seconds centred on a hop (odd, ≥ 1), at most
    2·n_frames − 1 (from any of the recording's ``n_frames`` frames, a longer window holds no more of
    them); None (the whole recording) stays None."""
    if window_s is None:
        return None
    if not (np.isfinite(window_s) and window_s >= 0):
        raise UserError(f"the integration window must be a non-negative number of seconds, got {window_s}")
    return 2 * min(int(round(window_s * fs / hop / 2)), n_frames - 1) + 1


WINDOW_AVERAGE_COPIES = 3
"""Copies of each frame's values :func:`window_average` holds at once: the values, their cumulative
sum and the averages (what a memory budget per frame counts)."""


def window_average(
    compute: Callable[[int, int], torch.Tensor], n: int, active: torch.Tensor, window: int | None, batch: int,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Per-frame values averaged over the active frames of a window centred on each frame.

    ``compute(lo, hi)`` gives the values of frames lo…hi−1, shape (hi − lo, ...); ``active`` (n,)
    says which frames count. ``window`` frames (odd) centred on each frame; 1 is each frame alone;
    None averages the whole recording into one. Yields (frames covered, averages (B, ...)); with
    None one item (slice(0, n), (1, ...)). A frame whose window holds no active frame gets zeros.
    Works in batches of ``batch`` frames plus the window's halo, so memory does not grow with n;
    each frame's values are computed once (the halo is carried over from the previous batch).
    """
    weights = active.float()
    if window is None:
        total = sum(_weighted(compute(s, min(n, s + batch)), weights[s : s + batch]).sum(0) for s in range(0, n, batch))
        yield slice(0, n), (total / weights.sum().clamp(min=1))[None]
        return
    half = window // 2
    carried, computed_to = None, 0  # values of frames [lo, computed_to) kept from the previous batch
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        lo, hi = max(0, start - half), min(n, stop + half)
        kept = max(0, computed_to - lo)  # frames of this batch's span already computed
        values = carried[len(carried) - kept :] if kept else None
        if lo + kept < hi:
            fresh = _weighted(compute(lo + kept, hi), weights[lo + kept : hi])
            values = fresh if values is None else torch.cat([values, fresh])
        carried, computed_to = values, hi
        if half == 0:
            yield slice(start, stop), values
            continue
        total, count = window_sums(values, weights[lo:hi], torch.arange(start, stop, device=values.device) - lo, half)
        yield slice(start, stop), _weighted(total, 1 / count.clamp(min=1))


def window_sums(weighted: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor, half: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of the rows of ``weighted`` (B, ...) and of ``weights`` (B,) from centre − half to
    centre + half (clipped to the B rows) for each of ``centres`` (K,) → (K, ...), (K,); one
    cumulative sum, so the cost does not grow with the window."""
    summed = weighted.new_zeros((len(weighted) + 1, *weighted.shape[1:]))
    torch.cumsum(weighted, 0, out=summed[1:])  # in place: no second copy of the rows
    counts = torch.cat([weights.new_zeros(1), weights.cumsum(0)])
    first, last = (centres - half).clamp(min=0), (centres + half + 1).clamp(max=len(weighted))
    return summed[last] - summed[first], counts[last] - counts[first]


def _weighted(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """values (B, ...) times weights (B,) broadcast over the trailing axes."""
    return values * weights.reshape(-1, *([1] * (values.dim() - 1))).to(values.dtype)


def pick_peaks(corr: torch.Tensor, k: int, min_separation: int, limit: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k strongest local maxima of each correlation, strongest first, with parabolic refinement.

    Args:
        corr: (..., n_lags) correlation values; lag index 0 is the most negative lag.
        min_separation: peaks closer than this many lag bins to a stronger one are skipped.
        limit: optional (...,) bool-able tensor of per-row maximum |lag| in bins around the centre.
    Returns:
        positions (..., k) in lag bins relative to the centre (fractional; NaN where fewer than k
        peaks exist) and their correlation values (..., k).
    """
    n = corr.shape[-1]
    centre = (n - 1) // 2
    min_separation = min(min_separation, n)  # wider blanks no more of the row
    lags = torch.arange(n, device=corr.device) - centre
    is_peak = local_maxima(corr)
    if limit is not None:
        is_peak &= lags.abs() <= limit[..., None]
    candidates = torch.where(is_peak, corr, -torch.inf)
    window = torch.arange(-min_separation, min_separation + 1, device=corr.device)
    chosen_val, chosen_idx = [], []
    for _ in range(k):  # greedy: the strongest remaining peak, then its neighbourhood is out
        value, idx = row_max(candidates)
        chosen_val.append(value)
        chosen_idx.append(idx)
        candidates.scatter_(-1, (idx + window).clamp(0, n - 1), -torch.inf)
    value, idx = torch.cat(chosen_val, dim=-1), torch.cat(chosen_idx, dim=-1)  # (..., k)
    found = torch.isfinite(value)
    positions = torch.where(found, (idx - centre).to(corr.dtype) + _parabolic_offset(corr, idx), torch.nan)
    return positions, torch.where(found, value, 0.0)


def row_max(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The maximum of each row of ``values`` (..., n) and its first index, (..., 1) each: what
    ``values.max(dim=-1, keepdim=True)`` gives, as a max-pool over the whole row, which torch
    vectorizes on a CPU where ``max`` with indices does not (half the time, benchmarks/tdoa_speed.py)."""
    n = values.shape[-1]
    value, idx = torch.nn.functional.max_pool1d(values.reshape(-1, 1, n), n, return_indices=True)
    return value.view(*values.shape[:-1], 1), idx.view(*values.shape[:-1], 1)


def local_maxima(corr: torch.Tensor) -> torch.Tensor:
    """Bins (..., n) that are at least both neighbours and above one of them (a maximum, not a flat
    run); an end bin above its one neighbour counts. With s the signs of the steps into and out of
    a bin, that is s_in − s_out ≥ 1 (rising or flat in, falling or flat out, not flat both ways)."""
    steps = torch.sign(torch.diff(corr))
    peaks = torch.empty(corr.shape, dtype=torch.bool, device=corr.device)
    torch.ge(steps[..., :-1] - steps[..., 1:], 1, out=peaks[..., 1:-1])
    torch.gt(corr[..., :1], corr[..., 1:2], out=peaks[..., :1])
    torch.gt(corr[..., -1:], corr[..., -2:-1], out=peaks[..., -1:])
    return peaks


def _parabolic_offset(corr: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Sub-bin offsets in [−0.5, 0.5] of the parabolas through the peaks at ``idx`` (..., k) of corr
    (..., n) and their two neighbours → (..., k)."""
    n = corr.shape[-1]
    y0 = corr.gather(-1, idx)
    ym = corr.gather(-1, (idx - 1).clamp(0, n - 1))
    yp = corr.gather(-1, (idx + 1).clamp(0, n - 1))
    denom = ym - 2 * y0 + yp
    offset = torch.where(denom < 0, 0.5 * (ym - yp) / denom.clamp(max=-EPS), torch.zeros_like(y0))
    return offset.clamp(-0.5, 0.5)


def silent_frames(frames: torch.Tensor, silence_db: float = SILENCE_DB) -> torch.Tensor:
    """Frames whose mean power over mics (less each frame's mean: a DC offset is not sound) is more
    than ``silence_db`` below the loudest frame. (F, M, L) → (F,)"""
    n = frames.shape[-1]
    power = (torch.linalg.vector_norm(frames, dim=-1) ** 2 / n - frames.mean(dim=-1) ** 2).clamp(min=0).mean(dim=1)  # no copy of the strided frames
    return power < power.max() * 10 ** (-silence_db / 10) + 1e-20
