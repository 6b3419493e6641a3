"""TDOA estimation for every frame and mic pair of a recording, and the ``tdoa.csv`` format.

Methods are registered by name in :data:`TDOA_METHODS`; each maps frames to a score per lag
(correlation or probability), and one peak picker turns scores into the ``--peaks`` strongest
TDOAs. See :mod:`sslkit.gcc` for the sign convention.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import GeometryError, InputFileError, SslkitWarning, UserError
from sslkit.files import atomic_file, read_csv_columns, read_table
from sslkit.gcc import correlation, cross_spectra, frame_audio, frame_times, gcc_fft_length, mic_pairs, pick_peaks, silent_frames, window_average, window_frames
from sslkit.geometry import check_speed_of_sound
from sslkit.recording import Recording
from sslkit.resources import check_memory

TDOA_COLUMNS = ["frame", "time", "mic_i", "mic_j", "rank", "tdoa_s", "delta_m", "score"]
MAX_PEAKS = 64
"""Most TDOA peaks per frame and pair a tdoa.csv may list."""
CORRELATION_COPIES = 4
"""Complex spectra and correlations of one batch of frames × pairs alive at once in ``gcc``."""
LAG_MARGIN = 2
"""Samples added to the geometric bound d/c·fs by ``--max-tau auto`` (sub-sample error, sync)."""


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


@dataclass
class TdoaOptions:
    """Options shared by the TDOA methods (the CLI's flags)."""

    frame: int = 2048
    hop: int = 1024
    pairs: str = "all"
    peaks: int = 1
    min_separation_s: float = 1e-4
    max_tau: str = "auto"
    weighting: str = "phat"
    beta: float = 0.7
    upsample: int = 1
    silence_db: float = 40.0
    c: float = 343.0
    device: str = "cpu"
    checkpoint: str | None = None
    batch_frames: int = 16
    window: float = 0.0
    """Seconds over which each hop's cross-spectra (NGCC-PHAT: lag probabilities) are averaged, centred on it (0: the hop alone)."""
    static: bool = False
    """Average the whole recording into one estimate (a static source)."""


def lag_bounds(mics: np.ndarray, pairs: np.ndarray, opts: TdoaOptions, fs: int) -> np.ndarray:
    """Largest plausible |τ| per pair in samples: geometry (auto) or a fixed ``--max-tau`` in seconds."""
    if opts.max_tau == "auto":
        dist = np.linalg.norm(mics[pairs[:, 0]] - mics[pairs[:, 1]], axis=1)
        return dist / opts.c * fs + LAG_MARGIN
    try:
        value = float(opts.max_tau)
    except ValueError:
        raise UserError(f"--max-tau must be auto or seconds, got '{opts.max_tau}'") from None
    if value <= 0:
        raise UserError("--max-tau must be positive")
    return np.full(len(pairs), value * fs)


class GccScorer:
    """GCC per lag (PHAT, β-PHAT or plain), from cross-spectra averaged over the integration window."""

    def __init__(self, opts: TdoaOptions, needed_lag: int, fs: int, max_lag: int, frame: int):
        self.opts, self.max_lag, self.n_fft = opts, max_lag, gcc_fft_length(frame, max_lag)
        self.per_sample = opts.upsample

    def per_frame(self, frames: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
        """What is averaged over a window: the weighted cross-spectra, (F, P, K)."""
        return cross_spectra(frames, pairs, self.n_fft, self.opts.weighting, self.opts.beta)

    def scores(self, averaged: torch.Tensor) -> torch.Tensor:
        """Correlation per lag bin (1/per_sample samples), (F, P, 2·max_lag·per_sample + 1)."""
        return correlation(averaged, self.n_fft, self.max_lag, self.opts.upsample)


def pick_shipped_ngcc(max_lag: int, fs: int) -> str:
    """The shipped NGCC-PHAT checkpoint with the smallest lag range that covers ``max_lag`` at ``fs``."""
    from sslkit.models.checkpoint import read_checkpoint_file, shipped_checkpoints

    fitting = []
    for path in shipped_checkpoints():
        meta = read_checkpoint_file(path)
        cfg = meta["config"]
        if meta["model"] == "ngcc-phat" and cfg["fs"] == fs and cfg["max_tau"] >= max_lag:
            fitting.append((cfg["max_tau"], str(path)))
    if not fitting:
        raise GeometryError(
            f"no shipped NGCC-PHAT checkpoint covers lags up to {max_lag} samples at {fs} Hz; "
            "train one for this array (sslkit train-ngcc --scene ...) and pass --checkpoint, or use gcc-phat"
        )
    return min(fitting)[1]


class NgccScorer:
    """Scores from an NGCC-PHAT checkpoint: softmax probabilities per lag (first output track).

    Without a checkpoint, the shipped one that fits the array's lag range is used.
    """

    per_sample = 1

    def __init__(self, opts: TdoaOptions, needed_lag: int, fs: int, max_lag: int, frame: int):
        from sslkit.models.checkpoint import load_checkpoint

        path = opts.checkpoint or pick_shipped_ngcc(needed_lag, fs)
        self.model, self.meta = load_checkpoint(path, opts.device, kind="ngcc-phat")
        self.path = path
        if needed_lag > self.model.max_tau:
            raise GeometryError(
                f"{path}: the checkpoint covers |τ| ≤ {self.model.max_tau} samples but the mic geometry needs "
                f"{needed_lag}; use a checkpoint trained for this array (sslkit train-ngcc) or --method gcc-phat"
            )
        if self.model.fs != fs:
            raise InputFileError(path, f"trained at {self.model.fs} Hz, but the recording is at {fs} Hz")

    def per_frame(self, frames: torch.Tensor, pairs: np.ndarray) -> torch.Tensor:
        """What is averaged over a window: the lag probabilities, (F, P, 2·max_tau + 1)."""
        with torch.no_grad():
            logits = self.model.pair_logits(frames, torch.as_tensor(pairs, device=frames.device))
        return torch.softmax(logits[:, :, 0], dim=-1)

    def scores(self, averaged: torch.Tensor) -> torch.Tensor:
        return averaged


TDOA_METHODS: dict[str, type] = {"gcc-phat": GccScorer, "ngcc": NgccScorer}
"""TDOA methods by name; each is built once per run with (options, needed lag, fs, searched lag, frame
length), averages its ``per_frame`` values over the integration window and turns them into ``scores``
per lag bin (``per_sample`` bins per sample)."""


def estimate_tdoa(rec: Recording, method: str = "gcc-phat", opts: TdoaOptions | None = None, on_progress=None) -> TdoaResult:
    """TDOAs of every frame and mic pair of ``rec``, batched over frames × pairs."""
    opts = opts or TdoaOptions()
    if method not in TDOA_METHODS:
        raise UserError(f"unknown TDOA method '{method}' (choose from {', '.join(TDOA_METHODS)})")
    check_speed_of_sound(opts.c)
    if not opts.silence_db > 0:
        raise UserError(f"the silence threshold must be a positive number of dB below the loudest frame, got {opts.silence_db}")
    pairs = mic_pairs(opts.pairs, rec.n_mics)
    bounds = lag_bounds(rec.mics, pairs, opts, rec.fs)
    max_lag = int(np.ceil(bounds.max()))  # lags searched (geometry plus margin)
    needed_lag = int(np.ceil(bounds.max() - (LAG_MARGIN if opts.max_tau == "auto" else 0)))  # lags the geometry needs
    if max_lag >= opts.frame // 2:
        raise UserError(f"--frame {opts.frame} is too short for lags up to {max_lag} samples; use at least {4 * max_lag}")
    check_memory(CORRELATION_COPIES * opts.batch_frames * len(pairs) * opts.frame * opts.upsample * 8,
                 f"correlations of {len(pairs)} pairs over {opts.frame}-sample frames upsampled {opts.upsample}×",
                 "lower the upsampling factor or the frame length")
    scorer = TDOA_METHODS[method](opts, needed_lag, rec.fs, max_lag, opts.frame)
    audio = torch.as_tensor(rec.audio, device=opts.device)
    frames_all = frame_audio(audio, opts.frame, opts.hop)
    silent = silent_frames(frames_all, opts.silence_db)
    if silent.all():
        warnings.warn(SslkitWarning(f"{rec.path}: every frame is more than {opts.silence_db:g} dB below the loudest, so all are "
                                    "flagged silent and have no TDOA"), stacklevel=2)
    window = None if opts.static else window_frames(opts.window, opts.hop, rec.fs)
    per_sample = scorer.per_sample
    limit = torch.as_tensor(bounds * per_sample, device=opts.device)
    min_sep = max(1, int(round(opts.min_separation_s * rec.fs * per_sample)))
    tdoas, scores = [], []
    averages = window_average(lambda lo, hi: scorer.per_frame(frames_all[lo:hi], pairs), len(frames_all), ~silent, window, opts.batch_frames)
    for covered, averaged in averages:
        score = scorer.scores(averaged)
        lag, value = pick_peaks(score, opts.peaks, min_sep, limit.to(score.dtype).expand(score.shape[:-1]))
        tdoas.append((lag / (per_sample * rec.fs)).cpu().numpy())
        scores.append(value.cpu().numpy())
        if on_progress:
            on_progress(covered.stop, len(frames_all))
    tdoa, score = np.concatenate(tdoas), np.concatenate(scores)
    times = frame_times(len(frames_all), opts.frame, opts.hop, rec.fs)
    silent = silent.cpu().numpy()
    if window is None:  # one estimate for the whole recording, at the mean time of its active frames
        times, silent = np.array([times[~silent].mean() if (~silent).any() else times.mean()]), np.array([silent.all()])
    tdoa[silent] = np.nan
    score[silent] = 0.0
    return TdoaResult(times, pairs, rec.mic_ids, tdoa, score, silent)


def true_tdoa(positions: np.ndarray, mics: np.ndarray, pairs: np.ndarray, c: float = 343.0) -> np.ndarray:
    """τᵢⱼ = (‖s − rᵢ‖ − ‖s − rⱼ‖)/c for source positions (F, 3) → (F, P) seconds."""
    dist = np.linalg.norm(positions[:, None] - mics[None], axis=-1)
    return (dist[:, pairs[:, 0]] - dist[:, pairs[:, 1]]) / c


def write_tdoa_csv(path: str | os.PathLike, result: TdoaResult, c: float = 343.0) -> None:
    """Write ``tdoa.csv``: one row per frame, pair and peak rank (rank 1 = strongest)."""
    f, p, k = result.tdoa.shape
    fi, pi, ki = np.meshgrid(np.arange(f), np.arange(p), np.arange(k), indexing="ij")
    fi, pi, ki = fi.ravel(), pi.ravel(), ki.ravel()
    tau = result.tdoa.ravel()
    ids = np.array(result.mic_ids)
    columns = [
        fi.astype(str), np.char.mod("%.6f", result.times[fi]), ids[result.pairs[pi, 0]], ids[result.pairs[pi, 1]],
        (ki + 1).astype(str), np.char.mod("%.9f", tau), np.char.mod("%.6f", tau * c), np.char.mod("%.6f", result.score.ravel()),
    ]
    lines = [",".join(row) for row in zip(*columns)]
    with atomic_file(path) as tmp:
        tmp.write_text(",".join(TDOA_COLUMNS) + "\n" + "\n".join(lines) + "\n")


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