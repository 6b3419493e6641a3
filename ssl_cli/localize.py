"""Source localization of a recording by any registered method, and the ``positions.csv`` format.

Methods (``LOCATE_METHODS``): ``multilat`` (robust RANSAC multilateration over TDOA peaks) and
``srp-phat`` (steered response power on a grid); more register here by name.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslkit import DEFAULT_METHOD, DEFAULT_WINDOW_S
from sslkit.errors import InputFileError, UserError
from sslkit.files import read_csv_columns, write_csv
from sslkit.geometry import check_metres, check_speed_of_sound
from sslkit.recording import Recording, room_channels

POSITION_COLUMNS = ["time", "x", "y", "z", "confidence", "n_inliers", "track"]
BOUNDS_MARGIN_M = 1.0
GEOMETRY_TOLERANCE_M = 0.5
"""How far a recording's mic may lie from the mics a wav2pos checkpoint was trained with."""


@dataclass
class PositionTrack:
    """Estimated positions, one row per hop and track (several tracks: several sources per hop).

    times (R,) s, xyz (R, 3) m (NaN = no solution), confidence (R,), n_inliers (R,), track (R,)
    the source's rank within its hop (0 = strongest; all 0 for one source).
    """

    times: np.ndarray
    xyz: np.ndarray
    confidence: np.ndarray
    n_inliers: np.ndarray
    warnings: list[str] = field(default_factory=list)
    estimated_mics: dict[str, np.ndarray] = field(default_factory=dict)
    """Positions estimated for mics given with unknown coordinates (wav2pos), by mic id."""
    track: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.track is None:
            self.track = np.zeros(len(self.times), dtype=int)

    @classmethod
    def from_hops(cls, times: np.ndarray, xyz: np.ndarray, confidence: np.ndarray, n_inliers: np.ndarray, warning: str | None = None) -> PositionTrack:
        """Rows from per-hop arrays of S sources: times (F,), xyz (F, S, 3), confidence and n_inliers (F, S)."""
        f, s = confidence.shape
        return cls(np.repeat(times, s), xyz.reshape(f * s, 3), confidence.ravel(), n_inliers.ravel(), [warning] if warning else [],
                   track=np.tile(np.arange(s), f))


@dataclass
class LocateOptions:
    """Options of ``sslkit locate`` (see its --help)."""

    tdoa_method: str = "gcc-phat"
    tdoa_csv: str | None = None
    checkpoint: str | None = None
    frame: int = 2048
    hop: int = 1024
    peaks: int = 4
    pool: int = 1
    dims: int = 3
    height: float | None = None
    bounds: np.ndarray | None = None
    threshold: float = 0.1
    hypotheses: int = 400
    min_inliers: int | None = None
    smooth: int = 0
    c: float = 343.0
    device: str = "cpu"
    seed: int = 0
    use_mics: list[str] | None = None
    unknown_mics: list[str] = field(default_factory=list)
    source_audio: np.ndarray | None = None
    views: int = 8
    refine_radius: float = 1.0
    start_window: int = 9
    window: float = DEFAULT_WINDOW_S
    """Seconds over which each hop's cross-spectra are averaged, centred on it (multilat, srp-phat)."""
    static: bool = False
    """The whole recording is one window: one position (multilat, srp-phat)."""
    sources: int = 1
    """Sources located per hop, strongest first (multilat, srp-phat)."""


def default_bounds(rec: Recording) -> np.ndarray:
    """Search box (2, 3): the room of scene.yaml when known, else the mics' box grown by 1 m (z ≥ 0)."""
    room = rec.scene.get("room", {}).get("dimensions") if rec.scene else None
    if room:
        return np.array([[0.0, 0.0, 0.0], room])
    lo, hi = rec.mics.min(axis=0) - BOUNDS_MARGIN_M, rec.mics.max(axis=0) + BOUNDS_MARGIN_M
    lo[2] = max(lo[2], 0.0)
    return np.stack([lo, hi])


def pool_frames(times: np.ndarray, tdoa: np.ndarray, score: np.ndarray, pool: int):
    """Merge each ``pool`` consecutive frames into one measurement set (peaks stacked), for a
    quasi-static source. (F, P, K) → (F // pool, P, K·pool); times are averaged."""
    if pool <= 1:
        return times, tdoa, score
    n = len(times) // pool
    if n == 0:
        raise UserError(f"--pool {pool} is longer than the recording's {len(times)} frames")

    def merge(a: np.ndarray) -> np.ndarray:
        f, p, k = a[: n * pool].shape
        return a[: n * pool].reshape(n, pool, p, k).transpose(0, 2, 1, 3).reshape(n, p, pool * k)
    return times[: n * pool].reshape(n, pool).mean(1), merge(tdoa), merge(score)


def locate_multilat(rec: Recording, opts: LocateOptions, on_progress=None) -> PositionTrack:
    from sslkit.multilateration import MultilatOptions, check_array_geometry, range_differences, ransac_multilaterate
    from sslkit.tdoa import TdoaOptions, estimate_tdoa, read_tdoa_csv

    warning = check_array_geometry(rec.mics, opts.dims)
    if opts.tdoa_csv:
        result = read_tdoa_csv(opts.tdoa_csv, rec.mic_ids)
    else:
        tdoa_opts = TdoaOptions(frame=opts.frame, hop=opts.hop, peaks=opts.peaks, c=opts.c, device=opts.device, checkpoint=opts.checkpoint,
                                window=opts.window, static=opts.static)
        result = estimate_tdoa(rec, opts.tdoa_method, tdoa_opts, on_progress)
    times, tdoa, score = pool_frames(result.times, result.tdoa, result.score, opts.pool)
    ml = MultilatOptions(opts.hypotheses, opts.threshold, opts.min_inliers, dims=opts.dims, height=opts.height,
                         bounds=opts.bounds if opts.bounds is not None else default_bounds(rec), c=opts.c, seed=opts.seed)
    found = []
    for _ in range(opts.sources):  # sequential RANSAC: each source's consistent peaks are removed before the next
        out = ransac_multilaterate(rec.mics, result.pairs, tdoa, ml, score)
        found.append(out)
        explained = np.abs(tdoa * opts.c - range_differences(out["xyz"], rec.mics, result.pairs)[..., None]) < opts.threshold
        tdoa, score = np.where(explained, np.nan, tdoa), np.where(explained, 0.0, score)
    return PositionTrack.from_hops(times, np.stack([o["xyz"] for o in found], 1), np.stack([o["confidence"] for o in found], 1),
                                   np.stack([o["n_inliers"] for o in found], 1), warning)


def locate_srp(rec: Recording, opts: LocateOptions, on_progress=None) -> PositionTrack:
    from sslkit.gcc import mic_pairs
    from sslkit.multilateration import check_array_geometry
    from sslkit.srp import SrpOptions, srp_phat

    if opts.tdoa_csv or opts.tdoa_method != "gcc-phat":
        raise UserError("srp-phat steers GCC-PHAT itself; NGCC-PHAT and tdoa.csv TDOAs work with the multilat method")
    bounds = opts.bounds if opts.bounds is not None else default_bounds(rec)
    if opts.dims == 2:
        z = opts.height if opts.height is not None else float(rec.mics[:, 2].mean())
        bounds = bounds.copy()
        bounds[:, 2] = z
    warning = check_array_geometry(rec.mics, opts.dims)
    pairs = mic_pairs("all", rec.n_mics)
    srp_opts = SrpOptions(bounds=bounds, frame=opts.frame, hop=opts.hop, c=opts.c, device=opts.device, window=opts.window,
                          static=opts.static, sources=opts.sources)
    srp = srp_phat(rec.audio, rec.fs, rec.mics, pairs, srp_opts, on_progress)
    power = srp["power"]
    return PositionTrack.from_hops(srp["times"], srp["xyz"], np.clip(power, 0, 1), np.full(power.shape, len(pairs)), warning)


def locate_wav2pos(rec: Recording, opts: LocateOptions, on_progress=None) -> PositionTrack:
    """wav2pos on frames of the checkpoint's length: setups 1a (all mics known), 1b (known source
    signal: ``opts.source_audio``) and 2 (mics in ``opts.unknown_mics`` have unknown positions).

    With ``opts.refine_radius`` > 0, each estimate is then refined within that radius by fitting
    the NGCC-PHAT lag distributions the model computed anyway (``sslkit.lagfit``), over the pairs
    of mics with known positions, from the median of the network's estimates over
    ``opts.start_window`` frames (``DelayedLagFit``): the network finds the neighbourhood, the fit
    the sample-precise TDOAs (on 8 simulated LuViRA validation recordings with 11 mics: MAE 47 cm
    from the network, 17 cm fitted from each frame's own estimate, 11 cm from the median of 9).
    The confidence is then the fit's (``lag_fit_confidence``); without the fit, that of ``opts.views``
    masked views."""
    import torch

    from sslkit.gcc import frame_audio, frame_times, silent_frames
    from sslkit.models.checkpoint import load_checkpoint, shipped_checkpoint
    from sslkit.models.wav2pos import predict_with_views, wav2pos_frame_batch

    if opts.static or opts.sources > 1:
        raise UserError("wav2pos estimates one source per frame (its temporal integration is the start window); "
                        "--static and --sources work with srp-phat and multilat")
    path = opts.checkpoint or shipped_checkpoint("wav2pos")
    model, meta = load_checkpoint(path, opts.device, kind="wav2pos")
    check_wav2pos_input(model, meta, rec, path, opts)
    n = model.n_samples
    audio = torch.as_tensor(rec.audio, device=opts.device)
    frames = frame_audio(audio, n, opts.hop)  # (F, M, N)
    silent = silent_frames(frames, 40.0).cpu().numpy()
    source = torch.zeros(len(frames), 1, n, device=opts.device)
    if opts.source_audio is not None:
        source = frame_audio(torch.as_tensor(opts.source_audio[:, None], device=opts.device), n, opts.hop)
        source = source / (source.abs().amax(dim=-1, keepdim=True) + 1e-8)
    frames = frames / (frames.abs().amax(dim=(1, 2), keepdim=True) + 1e-8)
    inputs = torch.cat([source, frames], dim=1)
    coords = torch.cat([torch.zeros(1, 3), torch.as_tensor(rec.mics, dtype=torch.float32)])[None].expand(len(frames), -1, -1).to(opts.device)
    audio_known = torch.ones(inputs.shape[:2], dtype=torch.bool, device=opts.device)
    audio_known[:, 0] = opts.source_audio is not None
    coord_known = torch.ones_like(audio_known)
    coord_known[:, 0] = False
    unknown = [rec.mic_ids.index(m) + 1 for m in opts.unknown_mics]
    coord_known[:, unknown] = False
    refine = opts.refine_radius > 0 and model.ngcc is not None
    fit = DelayedLagFit(rec, unknown, model.fs, opts) if refine else None
    sources, confidence, mics = [], [], []
    frame_batch = wav2pos_frame_batch(opts.device)
    generator = torch.Generator().manual_seed(opts.seed)
    with torch.no_grad():
        for s in range(0, len(frames), frame_batch):
            block = slice(s, s + frame_batch)
            out = predict_with_views(model, inputs[block], coords[block], audio_known[block], coord_known[block], 0 if refine else opts.views, generator)
            network = out["source"].cpu().numpy()
            network[silent[block]] = np.nan
            xyz, conf = fit.add(network, out["pair_probs"]) if fit else (network, out["confidence"].cpu().numpy())
            sources.append(xyz)
            confidence.append(conf)
            mics.append(out["mics"].cpu().numpy())
            if on_progress:
                on_progress(min(s + frame_batch, len(frames)), len(frames))
        if fit:
            xyz, conf = fit.finish()
            sources.append(xyz)
            confidence.append(conf)
    xyz = np.concatenate(sources).astype(float)
    mic_pred = np.concatenate(mics)
    xyz[silent] = np.nan
    estimated = {rec.mic_ids[u - 1]: np.median(mic_pred[~silent, u - 1], axis=0) for u in unknown}
    times = frame_times(len(frames), n, opts.hop, rec.fs)
    known = int(rec.n_mics - len(unknown))
    notes = [] if refine or opts.refine_radius <= 0 else [f"{path} has no NGCC-PHAT features: positions are not refined"]
    notes += [note for note in [untrained_geometry(meta, rec.mics[[i for i in range(rec.n_mics) if i + 1 not in unknown]], path)] if note]
    return PositionTrack(times, xyz, np.where(silent, 0.0, np.concatenate(confidence)), np.full(len(times), known), notes, estimated)


class DelayedLagFit:
    """Refines wav2pos estimates block by block as they arrive, each starting from (and with its
    prior around) the median of the network's estimates over ``opts.start_window`` frames around it,
    as multilateration borrows the hypotheses of its neighbours: a frame waits for the
    ``start_window // 2`` frames after it, so only those frames' lag distributions are held. The
    pairs of mics at token rows ``unknown_rows`` (unknown positions) are left out of the fit."""

    def __init__(self, rec: Recording, unknown_rows: list[int], fs: int, opts: LocateOptions):
        import torch

        from sslkit.lagfit import LagFitOptions
        from sslkit.models.wav2pos import upper_pairs

        rows = upper_pairs(rec.n_mics, opts.device)  # the model's pair order; mic k is token row k + 1
        placed = torch.ones(rec.n_mics + 1, dtype=torch.bool, device=opts.device)
        placed[unknown_rows] = False
        self.pairs, self.valid = rows - 1, placed[rows].all(1)
        self.mics = torch.as_tensor(rec.mics, dtype=torch.float32, device=opts.device)
        bounds = opts.bounds if opts.bounds is not None else default_bounds(rec)
        self.bounds = torch.as_tensor(bounds, dtype=torch.float32, device=opts.device)
        self.fit_opts = LagFitOptions(radius=opts.refine_radius, c=opts.c)
        self.fs, self.window, self.half = fs, opts.start_window, opts.start_window // 2
        self.network = np.empty((0, 3))
        self.pending: list = []  # lag distributions of the frames not yet fitted
        self.done = 0

    def refine(self, start, pair_probs):
        """Positions (F, 3) fitted from ``start`` (F, 3) to the lag distributions (F, M(M−1)/2, L),
        and their ``lag_fit_confidence`` (F,)."""
        from sslkit.lagfit import fit_lag_distributions, lag_fit_confidence

        probs = pair_probs.float()
        refined = fit_lag_distributions(start, self.mics, self.pairs, probs, self.fs, self.bounds, self.fit_opts, self.valid)
        return refined, lag_fit_confidence(refined, self.mics, self.pairs, probs, self.fs, self.fit_opts, self.valid)

    def add(self, network: np.ndarray, pair_probs) -> tuple[np.ndarray, np.ndarray]:
        """Take a block's network estimates (F, 3) (NaN: silent) and lag distributions; → positions
        and confidences of the frames whose windows are now complete."""
        self.network = np.concatenate([self.network, network])
        self.pending.append(pair_probs)
        return self.fit_until(len(self.network) - self.half)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and confidences of the last frames (their windows end with the recording)."""
        return self.fit_until(len(self.network))

    def fit_until(self, ready: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if ready <= self.done:
            return np.empty((0, 3)), np.empty(0)
        lo, hi = max(0, self.done - self.half), min(len(self.network), ready + self.half)
        starts = smooth_track(self.network[lo:hi], self.window)[self.done - lo : ready - lo]
        probs = torch.cat(self.pending)
        self.pending, self.done = [probs[ready - self.done :]], ready
        start = torch.as_tensor(np.nan_to_num(starts), dtype=torch.float32, device=probs.device)
        xyz, confidence = self.refine(start, probs[: len(start)])
        return xyz.cpu().numpy(), confidence.cpu().numpy()


def check_wav2pos_input(model, meta: dict, rec: Recording, path, opts: LocateOptions) -> None:
    """Sample rate, mic count within the training range, enough known mics, and mics inside the
    region the checkpoint was trained on."""
    if rec.fs != model.fs:
        raise InputFileError(rec.path, f"sample rate {rec.fs} Hz differs from the checkpoint's {model.fs} Hz ({path})")
    low, high = meta.get("mic_range", (5, rec.n_mics))
    if not low <= rec.n_mics <= high:
        raise InputFileError(rec.path, f"{rec.n_mics} microphones, but {path} was trained on {low} to {high} (choose some with --use-mics)")
    unknown = set(opts.unknown_mics) - set(rec.mic_ids)
    if unknown:
        raise UserError(f"--unknown-mics: no mic {sorted(unknown)[0]} in mics.csv")
    if rec.n_mics - len(opts.unknown_mics) < 5:
        raise UserError("wav2pos needs at least 5 microphones with known positions and audio")
    reach = np.abs(rec.mics - np.array(model.config["center"])).max() / model.config["scale"]
    if reach > 1.5:
        raise InputFileError(path, f"the mics lie {reach:.1f}× farther from the centre than the layouts it was trained on")


def untrained_geometry(meta: dict, mics: np.ndarray, path: object) -> str | None:
    """A warning when the mics (M, 3) lie outside the geometry the checkpoint was trained on
    (its ``train_geometry``): more than ``GEOMETRY_TOLERANCE_M`` from every mic of its layouts, or
    outside the box of its training mics. A learned model answers such input with garbage at its
    usual confidence."""
    record = meta.get("train_geometry")
    if not record:
        return None
    advice = f"estimates may be far off whatever their confidence; train for your room (sslkit train-wav2pos --scene YOUR.yaml --init {path})"
    if "mic_layouts" in record:
        trained = np.asarray(record["mic_layouts"]).reshape(-1, 3)
        gap = np.linalg.norm(mics[:, None] - trained[None], axis=-1).min(axis=1)
        if gap.max() > GEOMETRY_TOLERANCE_M:
            return f"{path} was trained on fixed mic layouts and mic {int(gap.argmax()) + 1} is {gap.max():.2f} m from every mic it saw: {advice}"
        return None
    lo, hi = np.asarray(record["mic_box"]) + [[-GEOMETRY_TOLERANCE_M], [GEOMETRY_TOLERANCE_M]]
    outside = ((mics < lo) | (mics > hi)).any(axis=1)
    if outside.any():
        return f"{path} was trained with mics inside {np.round(lo, 2).tolist()}–{np.round(hi, 2).tolist()} m and mic {int(outside.argmax()) + 1} lies outside: {advice}"
    return None


LOCATE_METHODS: dict[str, Callable[[Recording, LocateOptions, Callable | None], PositionTrack]] = {
    "multilat": locate_multilat,
    "srp-phat": locate_srp,
    "wav2pos": locate_wav2pos,
}


def locate(rec: Recording, method: str = DEFAULT_METHOD, opts: LocateOptions | None = None, on_progress=None) -> PositionTrack:
    """Positions of the sources over time with the named method (see ``LOCATE_METHODS``); a
    recording's near-source channel is left out (``room_channels``)."""
    if method not in LOCATE_METHODS:
        raise UserError(f"unknown --method '{method}' (choose from {', '.join(LOCATE_METHODS)})")
    opts = opts or LocateOptions()
    check_speed_of_sound(opts.c)
    rec = room_channels(rec)  # a near-source channel moves with the source: never a room mic
    if opts.use_mics:
        rec = select_mics(rec, opts.use_mics)
    track = LOCATE_METHODS[method](rec, opts, on_progress)
    if opts.smooth > 1:
        for k in np.unique(track.track):
            rows = track.track == k
            track.xyz[rows] = smooth_track(track.xyz[rows], opts.smooth)
    return track


def select_mics(rec: Recording, mic_ids: list[str]) -> Recording:
    """The recording restricted to the listed mic ids (in that order)."""
    missing = [m for m in mic_ids if m not in rec.mic_ids]
    if missing:
        raise UserError(f"--use-mics: no mic {missing[0]} in mics.csv (ids: {','.join(rec.mic_ids)})")
    idx = [rec.mic_ids.index(m) for m in mic_ids]
    return Recording(rec.audio[:, idx], rec.fs, list(mic_ids), rec.mics[idx], rec.sources, rec.scene, rec.path, rec.source_signal)


def smooth_track(xyz: np.ndarray, window: int) -> np.ndarray:
    """Running median over ``window`` frames that ignores NaN; frames without a solution stay NaN."""
    half = window // 2
    padded = np.pad(xyz, ((half, half), (0, 0)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (F, 3, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: the result is NaN, as wanted
        smoothed = np.nanmedian(windows, axis=-1)
    return np.where(np.isnan(xyz), np.nan, smoothed)


def write_positions(path: str | os.PathLike, track: PositionTrack) -> None:
    rows = ([t, *xyz, conf, int(n), int(k)] for t, xyz, conf, n, k in zip(track.times, track.xyz, track.confidence, track.n_inliers, track.track))
    write_csv(path, POSITION_COLUMNS, rows)


def read_positions(path: str | os.PathLike) -> PositionTrack:
    """Read a ``positions.csv`` (time,x,y,z[,confidence,n_inliers,track]); empty/nan cells are NaN."""
    cols = read_csv_columns(Path(path), ["time", "x", "y", "z"], ["confidence", "n_inliers", "track"])
    n = len(cols["time"])
    if n == 0:
        raise InputFileError(path, "no rows")
    if not np.all(np.isfinite(cols["time"])):
        raise InputFileError(path, "time must be a number on every row")
    check_metres(np.stack([cols["x"], cols["y"], cols["z"]], 1), path)
    conf = cols.get("confidence", np.ones(n))
    n_in = cols.get("n_inliers", np.zeros(n))
    n_in = np.where(np.isfinite(n_in) & (np.abs(n_in) < 2**31), n_in, 0).astype(int)  # informative only: unreadable counts are 0
    track = cols.get("track", np.zeros(n))
    if not np.all(np.isfinite(track) & (track >= 0) & (track < 2**31) & (track == np.round(track))):
        raise InputFileError(path, "track must be a non-negative integer on every row")
    return PositionTrack(cols["time"], np.stack([cols["x"], cols["y"], cols["z"]], 1), conf, n_in, track=track.astype(int))
