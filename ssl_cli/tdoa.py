"""TDOA estimation for every frame and mic pair of a recording, and the ``tdoa.csv`` format.

Methods are registered by name in :data:`TDOA_METHODS`; each maps frames to a score per lag
(correlation or probability), and one peak picker turns scores into the ``peaks`` strongest
TDOAs. See :mod:`sslkit.gcc` for the sign convention.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import InputFileError, SslkitWarning, UserError
from sslkit.files import atomic_file, read_csv_columns, read_table
from sslkit.gcc import (
    LAG_MARGIN,
    WINDOW_AVERAGE_COPIES,
    band_share,
    frame_audio,
    frame_correlations,
    frame_times,
    gcc_fft_length,
    mic_pairs,
    pick_peaks,
    silent_frames,
    window_average,
    window_frames,
)
from sslkit.geometry import SPEED_OF_SOUND, check_speed_of_sound, lag_classes, pair_lag_bounds, range_differences, speed_of_sound
from sslkit.hum import phat_taper
from sslkit.options import TDOA_METHOD_NAMES, TdoaOptions, at_rate, build_options, check_precision, check_tdoa_method_options
from sslkit.recording import Recording, SourceTrack, phat_max_freq, room_channels
from sslkit.resources import check_memory, frames_per_batch, resolve_device, warn_if_emulated_bfloat16

TDOA_COLUMNS = ["frame", "time", "mic_i", "mic_j", "rank", "tdoa_s", "delta_m", "score"]
TDOA_ACCURACY_M = 0.1
"""A TDOA counts as accurate within this many metres of range difference (Paper V's tolerance)."""
MAX_PEAKS = 64
"""Most TDOA peaks per frame and pair a tdoa.csv may list."""
CORRELATION_COPIES = WINDOW_AVERAGE_COPIES + 1
"""Copies of one frame's correlations (float32, frames × pairs × lag bins) alive at once while they
are averaged over the window and searched for peaks."""


@dataclass
class TdoaResult:
    """TDOAs of one recording.

    Attributes:
        times: frame centre times (s), shape (F,).
        pairs: 0-based mic indices, shape (P, 2).
        mic_ids: ids of all mics (to write ``mic_i,mic_j``).
        tdoa: τᵢⱼ in seconds, shape (F, P, K), NaN for silent frames or missing peaks.
        score: peak height (correlation or probability), shape (F, P, K), 0 where tdoa is NaN.
        silent: frames flagged as silent, shape (F,).
    """

    times: np.ndarray
    pairs: np.ndarray
    mic_ids: list[str]
    tdoa: np.ndarray
    score: np.ndarray
    silent: np.ndarray


def lag_bounds(mics: np.ndarray, pairs: np.ndarray, opts: TdoaOptions, fs: int) -> np.ndarray:
    """Largest plausible |τ| per pair in samples: geometry (auto) or a fixed ``max_tau`` in seconds."""
    if opts.max_tau == "auto":
        return pair_lag_bounds(mics, pairs, fs, opts.c) + LAG_MARGIN
    try:
        value = float(opts.max_tau)
    except ValueError:
        raise UserError(f"max_tau must be auto or seconds, got '{opts.max_tau}'") from None
    if value <= 0:
        raise UserError(f"max_tau must be a positive number of seconds, got {value}")
    return np.full(len(pairs), value * fs)


class GccScorer:
    """GCC per lag (PHAT, β-PHAT or plain), from correlations averaged over the integration window
    (the correlation is linear in the cross-spectra, so this is the GCC of the averaged spectra)."""

    def __init__(self, opts: TdoaOptions, needed_lag: int, fs: int, max_lag: int, frame: int):
        self.opts, self.max_lag, self.n_fft = opts, max_lag, gcc_fft_length(frame, max_lag)
        self.per_sample = opts.upsample
        self.band = band_share(opts.max_freq, fs)

    def frame_bytes(self, n_mics: int, n_pairs: int) -> int:
        """Memory one frame takes while it is scored: its correlations and its pairs' cross-spectra."""
        n_bins = 2 * self.max_lag * self.opts.upsample + 1
        return n_pairs * (CORRELATION_COPIES * n_bins * 4 + 3 * (self.n_fft * self.opts.upsample // 2 + 1) * 8)

    def per_frame(self, frames: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
        """What is averaged over a window: the correlation per lag bin (1/per_sample samples), (F, P, 2·max_lag·per_sample + 1)."""
        return frame_correlations(frames, pairs, self.n_fft, self.max_lag, self.opts.upsample, self.opts.weighting, self.opts.beta, self.band,
                                  self.opts.taper)

    def scores(self, averaged: torch.Tensor) -> torch.Tensor:
        return averaged


class NgccScorer:
    """Scores from an NGCC-PHAT checkpoint: softmax probabilities per lag (first output track).

    Without a checkpoint, the shipped one that fits the array's lag range is used.
    """

    per_sample = 1

    def __init__(self, opts: TdoaOptions, needed_lag: int, fs: int, max_lag: int, frame: int):
        from sslkit.models.checkpoint import load_model

        self.model, self.meta, self.path = load_model(opts.checkpoint, "ngcc-phat", opts.device, fs=fs, max_lag=needed_lag)
        self.reduced = opts.precision == "bfloat16"
        if self.reduced:
            warn_if_emulated_bfloat16(opts.device)
        self.frame = frame

    def frame_bytes(self, n_mics: int, n_pairs: int) -> int:
        """Memory one frame takes while it is scored: each mic's filtered channels (a few layers'
        worth), each pair's correlations and the head's activations over the lags."""
        channels, head = self.model.config["channels"], self.model.config["head_channels"]
        return 4 * (3 * n_mics * channels * self.frame + n_pairs * self.model.n_lags * (channels + 3 * head))

    def per_frame(self, frames: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
        """What is averaged over a window: the lag probabilities, (F, P, 2·max_tau + 1); with
        ``precision`` bfloat16 the network's convolutions run in bfloat16 (its FFTs stay float32)."""
        with torch.no_grad(), torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=self.reduced):
            logits = self.model.pair_logits(frames, torch.as_tensor(pairs, device=frames.device))
        return torch.softmax(logits[:, :, 0].float(), dim=-1)

    def scores(self, averaged: torch.Tensor) -> torch.Tensor:
        return averaged


TDOA_METHODS: dict[str, type] = dict(zip(TDOA_METHOD_NAMES, (GccScorer, NgccScorer)))
"""TDOA methods by name; each is built once per run with (options, needed lag, fs, searched lag, frame
length), averages its ``per_frame`` values over the integration window and turns them into ``scores``
per lag bin (``per_sample`` bins per sample)."""


def estimate_tdoa(rec: Recording, method: str = "gcc-phat", *, on_progress: Callable[[int, int], None] | None = None, **options) -> TdoaResult:
    """TDOAs of every frame and mic pair of ``rec`` with the named method (:data:`TDOA_METHODS`).

    ``options`` are the keyword options of :class:`TdoaOptions` (an unknown one is a TypeError
    listing them); a near-source channel is left out and ``c`` defaults to the recording's.
    ``on_progress(done, total)`` is called as frames are processed.
    """
    opts = build_options(TdoaOptions, options, "estimate_tdoa")
    rec = room_channels(rec)
    rec.check_holds(at_rate(opts, rec.fs).frame, "frame")
    return run_tdoa(rec, method, replace(opts, c=speed_of_sound(rec.scene, opts.c), device=resolve_device(opts.device)), on_progress)


def run_tdoa(rec: Recording, method: str, opts: TdoaOptions, on_progress=None) -> TdoaResult:
    """TDOAs of every frame and mic pair of ``rec`` (all its channels, ``opts.c`` given), batched over
    frames × pairs; NGCC-PHAT works on the recording resampled to its checkpoint's rate, with frames
    and hops of as many seconds as at the recording's (``at_rate``)."""
    if method not in TDOA_METHODS:
        raise UserError(f"unknown TDOA method '{method}' (choose from {', '.join(TDOA_METHODS)})")
    recording_fs = rec.fs
    check_tdoa_method_options(method, opts)
    if method == "ngcc":
        from sslkit.models.checkpoint import at_model_rate

        rec = at_model_rate(rec, opts.checkpoint, "ngcc-phat")
    else:
        if opts.max_freq is not None or opts.weighting != "cc":  # plain correlation weighs an empty band by its (nil) power
            opts = replace(opts, max_freq=phat_max_freq(rec, opts.max_freq))
        opts = replace(opts, taper=phat_taper(rec.audio, rec.fs, opts.taper, rec.path))
    opts = at_rate(opts, rec.fs, recording_fs)
    check_precision(opts.precision)
    check_speed_of_sound(opts.c)
    if not opts.silence_db > 0:
        raise UserError(f"the silence threshold must be a positive number of dB below the loudest frame, got {opts.silence_db}")
    pairs = mic_pairs(opts.pairs, rec.n_mics)
    bounds = lag_bounds(rec.mics, pairs, opts, rec.fs)
    max_lag = int(np.ceil(bounds.max()))  # lags searched (geometry plus margin)
    needed_lag = lag_classes(bounds.max() - (LAG_MARGIN if opts.max_tau == "auto" else 0))  # lag classes the geometry needs
    if max_lag >= opts.frame // 2:
        raise UserError(f"frames of {opts.frame} samples are too short for lags up to {max_lag} samples; use at least {4 * max_lag}")
    scorer = TDOA_METHODS[method](opts, needed_lag, rec.fs, max_lag, opts.frame)
    audio = torch.as_tensor(rec.audio, device=opts.device)
    frames_all = frame_audio(audio, opts.frame, opts.hop)
    window = None if opts.static else window_frames(opts.window, opts.hop, rec.fs, len(frames_all))
    batch = frames_per_batch(scorer.frame_bytes(rec.n_mics, len(pairs)), 0 if window is None else window - 1, opts.batch_frames,
                             f"{method} scores of {len(pairs)} pairs over {opts.frame}-sample frames upsampled {opts.upsample}×",
                             "choose fewer pairs (pairs ref:K), a lower upsampling factor, shorter frames or a shorter window")
    silent = silent_frames(frames_all, opts.silence_db)
    if silent.all():
        warnings.warn(SslkitWarning(f"{rec.path}: every frame is more than {opts.silence_db:g} dB below the loudest, so all are "
                                    "flagged silent and have no TDOA"), stacklevel=2)
    per_sample = scorer.per_sample
    n_lags = 2 * int(np.ceil(bounds.max() * per_sample)) + 1
    if opts.peaks > n_lags:
        raise UserError(f"peaks = {opts.peaks}: a pair has at most {n_lags} lags to choose from; lower --peaks")
    limit = torch.as_tensor(bounds * per_sample, device=opts.device)
    min_sep = max(1, int(round(opts.min_separation_s * rec.fs * per_sample)))
    n_out = 1 if window is None else len(frames_all)
    check_memory(2 * n_out * len(pairs) * opts.peaks * 8, f"TDOAs of {n_out} frames × {len(pairs)} pairs × {opts.peaks} peaks", "lower --peaks")
    tdoa, score = np.empty((n_out, len(pairs), opts.peaks)), np.empty((n_out, len(pairs), opts.peaks))  # filled in place
    averages = window_average(lambda lo, hi: scorer.per_frame(frames_all[lo:hi], pairs), len(frames_all), ~silent, window, batch)
    for covered, averaged in averages:
        scored = scorer.scores(averaged)
        lag, value = pick_peaks(scored, opts.peaks, min_sep, limit.to(scored.dtype).expand(scored.shape[:-1]))
        rows = slice(0, 1) if window is None else covered
        tdoa[rows], score[rows] = (lag / (per_sample * rec.fs)).cpu().numpy(), value.cpu().numpy()
        if on_progress:
            on_progress(covered.stop, len(frames_all))
    times = frame_times(len(frames_all), opts.frame, opts.hop, rec.fs)
    silent = silent.cpu().numpy()
    if window is None:  # one estimate for the whole recording, at the mean time of its active frames
        times, silent = np.array([times[~silent].mean() if (~silent).any() else times.mean()]), np.array([silent.all()])
    tdoa[silent] = np.nan
    score[silent] = 0.0
    return TdoaResult(times, pairs, rec.mic_ids, tdoa, score, silent)


def true_tdoa(positions: np.ndarray, mics: np.ndarray, pairs: np.ndarray, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """τᵢⱼ = (‖s − rᵢ‖ − ‖s − rⱼ‖)/c for source positions (F, 3) → (F, P) seconds."""
    return range_differences(positions, mics, pairs) / c


CSV_ROWS = 250_000
"""tdoa.csv rows formatted at once, in whole frames (long recordings: memory stays flat)."""
TDOA_ROW_BYTES = 64
"""A tdoa.csv row's length in bytes, from above (frame, time, ids, rank and three numbers)."""


def write_tdoa_csv(path: str | os.PathLike, result: TdoaResult, c: float = SPEED_OF_SOUND) -> None:
    """Write ``tdoa.csv``: one row per frame, pair and peak rank (rank 1 = strongest), about ``CSV_ROWS`` rows at a time."""
    from sslkit.resources import check_disk

    f, p, k = result.tdoa.shape
    check_disk(f * p * k * TDOA_ROW_BYTES, Path(path).parent, f"{Path(path).name}: {f * p * k} rows ({f} frames × {p} pairs × {k} peaks)",
               "choose fewer pairs (--pairs ref:1), fewer peaks or a longer --hop")
    ids = np.array(result.mic_ids)
    frames = max(1, CSV_ROWS // (p * k))
    with atomic_file(path) as tmp, open(tmp, "w") as out:
        out.write(",".join(TDOA_COLUMNS) + "\n")
        for start in range(0, f, frames):
            fi, pi, ki = (a.ravel() for a in np.meshgrid(np.arange(start, min(f, start + frames)), np.arange(p), np.arange(k), indexing="ij"))
            tau = result.tdoa[fi, pi, ki]
            columns = [
                fi.astype(str), np.char.mod("%.6f", result.times[fi]), ids[result.pairs[pi, 0]], ids[result.pairs[pi, 1]],
                (ki + 1).astype(str), np.char.mod("%.9f", tau), np.char.mod("%.6f", tau * c), np.char.mod("%.6f", result.score[fi, pi, ki]),
            ]
            out.write("".join(",".join(row) + "\n" for row in zip(*columns)))


def read_tdoa_csv(path: str | os.PathLike, mic_ids: list[str]) -> TdoaResult:
    """Read a ``tdoa.csv`` back into arrays (mic ids must be those of the recording's mics.csv)."""
    path = Path(path)
    header, rows = read_table(path, TDOA_COLUMNS)
    cols = read_csv_columns(path, ["frame", "time", "rank", "tdoa_s", "score"])
    if not rows:
        raise InputFileError(path, "no TDOA rows")
    frame, rank = cols["frame"], cols["rank"]
    if not (np.all(np.isfinite(frame) & (frame >= 0) & (frame < 2**31) & (frame == np.round(frame))) and np.all(np.isfinite(cols["time"]))):
        raise InputFileError(path, "frame must be a non-negative integer and time a number on every row")
    if not np.all(np.isfinite(rank) & (rank >= 1) & (rank <= MAX_PEAKS) & (rank == np.round(rank))):
        raise InputFileError(path, f"rank must be an integer from 1 to {MAX_PEAKS} on every row")
    index = {m: i for i, m in enumerate(mic_ids)}
    try:
        pi = np.array([index[row[header.index("mic_i")].strip()] for row in rows])
        pj = np.array([index[row[header.index("mic_j")].strip()] for row in rows])
    except KeyError as err:
        raise InputFileError(path, f"mic {err} is not in mics.csv") from None
    pair_list, pair_idx = np.unique(np.stack([pi, pj], 1), axis=0, return_inverse=True)
    frames, frame_idx = np.unique(frame.astype(int), return_inverse=True)
    k = int(rank.max())
    tdoa = np.full((len(frames), len(pair_list), k), np.nan)
    score = np.zeros_like(tdoa)
    tdoa[frame_idx, pair_idx.ravel(), rank.astype(int) - 1] = cols["tdoa_s"]
    score[frame_idx, pair_idx.ravel(), rank.astype(int) - 1] = np.nan_to_num(cols["score"])
    times = np.zeros(len(frames))
    times[frame_idx] = cols["time"]
    silent = np.all(np.isnan(tdoa), axis=(1, 2))
    return TdoaResult(times, pair_list, mic_ids, tdoa, score, silent)

TDOA_FILE = "tdoa.csv"


@dataclass
class TdoaRun:
    """What :func:`tdoa_files` did: the CSV written, the recording (room mics), the TDOAs, the speed
    of sound used, and the errors (m) of the strongest peaks against ``sources.csv``
    (:func:`strongest_peak_errors`; None without ground truth)."""

    csv: Path
    recording: Recording
    result: TdoaResult
    c: float
    errors_m: np.ndarray | None = None

    def error_summary(self) -> dict[str, float] | None:
        """``accuracy``: the share of ``errors_m`` within ``TDOA_ACCURACY_M``, and ``median_m``; None without ground truth."""
        if self.errors_m is None:
            return None
        return {"accuracy": float(np.mean(self.errors_m < TDOA_ACCURACY_M)), "median_m": float(np.median(self.errors_m))}


def tdoa_files(recording: str | os.PathLike, out: str | os.PathLike | None = None, mics: str | os.PathLike | None = None,
               method: str = "gcc-phat", on_progress: Callable[[int, int], None] | None = None, **options) -> TdoaRun:
    """TDOAs of a recording folder (or audio file with ``mics``) written to ``tdoa.csv`` at ``out``
    (a file, or a folder to write inside; default: beside the input); ``options`` as for :func:`estimate_tdoa`."""
    from sslkit.files import output_file
    from sslkit.recording import load_recording

    path = output_file(out, Path(recording), TDOA_FILE)
    rec = load_recording(recording, mics)
    c = speed_of_sound(rec.scene, options.pop("c", None))
    result = estimate_tdoa(rec, method, on_progress=on_progress, c=c, **options)
    write_tdoa_csv(path, result, c)
    run = TdoaRun(path, rec, result, c)
    if rec.sources is not None:
        run.errors_m = strongest_peak_errors(result, rec.sources, rec.mics, c)
    return run


def strongest_peak_errors(result: TdoaResult, truth: SourceTrack, mics: np.ndarray, c: float) -> np.ndarray | None:
    """|error| (m) of each pair's strongest peak against the nearest TDOA of the sources active then,
    over the non-silent frames where a source is active: (N, P); None when there are none."""
    positions = truth.positions_at(result.times)  # (F, S, 3)
    frames = ~result.silent & np.isfinite(positions).all(-1).any(-1)
    if not frames.any():
        return None
    delta = range_differences(positions[frames], mics, result.pairs)  # (N, S, P), NaN for inactive sources
    return np.nanmin(np.abs(result.tdoa[frames, None, :, 0] * c - delta), axis=1)
