"""TDOA estimation for every frame and mic pair of a recording, and the ``tdoa.csv`` format.

Methods are registered by name in :data:`TDOA_METHODS`; each maps frames to a score per lag
(correlation or probability), and one peak picker turns scores into the ``--peaks`` strongest
TDOAs. See :mod:`sslkit.gcc` for the sign convention.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sslkit.errors import GeometryError, InputFileError, SslkitWarning, UserError
from sslkit.files import atomic_file, read_csv_columns, read_table
from sslkit.gcc import frame_audio, frame_times, gcc, mic_pairs, pick_peaks, silent_frames
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


def gcc_scores(frames: torch.Tensor, pairs: np.ndarray, max_lag: int, opts: TdoaOptions) -> tuple[torch.Tensor, int]:
    """GCC per lag and the number of lag bins per sample (the upsampling factor)."""
    return gcc(frames, pairs, max_lag, opts.weighting, opts.beta, opts.upsample), opts.upsample


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

    def __init__(self, checkpoint: str | None, device: str, needed_lag: int, fs: int):
        from sslkit.models.checkpoint import load_checkpoint

        path = checkpoint or pick_shipped_ngcc(needed_lag, fs)
        self.model, self.meta = load_checkpoint(path, device, kind="ngcc-phat")
        self.path = path
        if needed_lag > self.model.max_tau:
            raise GeometryError(
                f"{path}: the checkpoint covers |τ| ≤ {self.model.max_tau} samples but the mic geometry needs "
                f"{needed_lag}; use a checkpoint trained for this array (sslkit train-ngcc) or --method gcc-phat"
            )

    def __call__(self, frames: torch.Tensor, pairs: np.ndarray, max_lag: int, opts: TdoaOptions) -> tuple[torch.Tensor, int]:
        with torch.no_grad():
            logits = self.model.pair_logits(frames, torch.as_tensor(pairs, device=frames.device))
        return torch.softmax(logits[:, :, 0], dim=-1), 1


TDOA_METHODS: dict[str, Callable] = {"gcc-phat": gcc_scores, "ngcc": NgccScorer}
"""TDOA methods by name; a class entry is built once per run with (checkpoint, device, needed lag, fs)."""


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
    scorer = TDOA_METHODS[method]
    if isinstance(scorer, type):
        scorer = scorer(opts.checkpoint, opts.device, needed_lag, rec.fs)
        if scorer.model.fs != rec.fs:
            raise InputFileError(rec.path, f"sample rate {rec.fs} Hz differs from the checkpoint's {scorer.model.fs} Hz")
    audio = torch.as_tensor(rec.audio, device=opts.device)
    frames_all = frame_audio(audio, opts.frame, opts.hop)
    silent = silent_frames(frames_all, opts.silence_db).cpu().numpy()
    tdoas, scores = [], []
    for start in range(0, len(frames_all), opts.batch_frames):
        frames = frames_all[start : start + opts.batch_frames]
        score, per_sample = scorer(frames, pairs, max_lag, opts)
        limit = torch.as_tensor(bounds * per_sample, device=score.device, dtype=score.dtype).expand(score.shape[:-1])
        min_sep = max(1, int(round(opts.min_separation_s * rec.fs * per_sample)))
        lag, value = pick_peaks(score, opts.peaks, min_sep, limit)
        tdoas.append((lag / (per_sample * rec.fs)).cpu().numpy())
        scores.append(value.cpu().numpy())
        if on_progress:
            on_progress(min(start + opts.batch_frames, len(frames_all)), len(frames_all))
    if silent.all():
        warnings.warn(SslkitWarning(f"{rec.path}: every frame is more than {opts.silence_db:g} dB below the loudest, so all are "
                                    "flagged silent and have no TDOA"), stacklevel=2)
    tdoa, score = np.concatenate(tdoas), np.concatenate(scores)
    tdoa[silent] = np.nan
    score[silent] = 0.0
    times = frame_times(len(frames_all), opts.frame, opts.hop, rec.fs)
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