"""wav2pos localization (Paper VII): a masked autoencoder over the mics' audio and positions, with
its estimates refined by fitting the NGCC-PHAT lag distributions it computes."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from sslkit.errors import InputFileError, UserError
from sslkit.gcc import window_frames, window_sums
from sslkit.geometry import check_sample_rate
from sslkit.localization.region import search_bounds
from sslkit.localization.track import PositionTrack, smooth_track
from sslkit.options import SILENCE_DB, Wav2PosOptions, at_rate
from sslkit.recording import Recording
from sslkit.resources import warn_if_emulated_bfloat16

GEOMETRY_TOLERANCE_M = 0.5
"""How far a recording's mic may lie from the mics a wav2pos checkpoint was trained with."""
MIN_KNOWN_MICS = 5
"""Mics with known positions and audio wav2pos needs."""


def locate_wav2pos(rec: Recording, opts: Wav2PosOptions, on_progress=None) -> PositionTrack:
    """wav2pos on frames of the checkpoint's length: setups 1a (all mics known), 1b (known source
    signal: ``opts.known_source``) and 2 (mics in ``opts.unknown_mics`` have unknown positions).

    With ``opts.refine_radius`` > 0, each estimate is then refined within that radius by fitting
    the NGCC-PHAT lag distributions the model computed anyway (``sslkit.localization.lagfit``), over the pairs
    of mics with known positions, from the median of the network's estimates over
    ``opts.start_window`` frames (``DelayedLagFit``): the network finds the neighbourhood, the fit
    the sample-precise TDOAs (benchmarks/README.md compares the three).
    The confidence is then the fit's (``lag_fit_confidence``); without the fit, that of ``opts.views``
    masked views."""
    from sslkit.gcc import centred, frame_audio, frame_times, silent_frames
    from sslkit.models.checkpoint import at_model_rate, load_checkpoint, resolve_checkpoint
    from sslkit.models.wav2pos import predict_with_views, wav2pos_frame_batch

    recording_fs = rec.fs
    rec = at_model_rate(rec, opts.checkpoint, "wav2pos")
    opts = at_rate(opts, rec.fs, recording_fs)
    path = resolve_checkpoint(opts.checkpoint, "wav2pos")
    model, meta = load_checkpoint(path, opts.device, kind="wav2pos")
    check_wav2pos_input(model, meta, rec, path, opts)
    if opts.precision == "bfloat16" and model.ngcc is not None:
        warn_if_emulated_bfloat16(opts.device)
    if opts.known_source and rec.source_signal is None:
        raise InputFileError(rec.path, "known_source needs a near-source channel (scene.yaml near_source), and there is none")
    n = model.n_samples
    audio = torch.as_tensor(rec.audio, device=opts.device)
    frames = frame_audio(audio, n, opts.hop)  # (F, M, N)
    silent = silent_frames(frames, SILENCE_DB).cpu().numpy()
    source = frame_audio(torch.as_tensor(rec.source_signal[:, None], device=opts.device), n, opts.hop) if opts.known_source else None

    def block_inputs(block: slice) -> torch.Tensor:
        """The network's audio tokens (B, 1 + M, N) of a block of frames, each ``centred`` and scaled to
        unit peak (the mics' frames together, the source's alone), as training's ``normalise``."""
        mic_audio = centred(frames[block])
        mic_audio = mic_audio / (mic_audio.abs().amax(dim=(1, 2), keepdim=True) + 1e-8)
        if source is None:
            return torch.cat([torch.zeros_like(mic_audio[:, :1]), mic_audio], dim=1)
        near = centred(source[block])
        return torch.cat([near / (near.abs().amax(dim=-1, keepdim=True) + 1e-8), mic_audio], dim=1)

    coords = torch.cat([torch.zeros(1, 3), torch.as_tensor(rec.mics, dtype=torch.float32)])[None].expand(len(frames), -1, -1).to(opts.device)
    audio_known = torch.ones(len(frames), rec.n_mics + 1, dtype=torch.bool, device=opts.device)
    audio_known[:, 0] = opts.known_source
    coord_known = torch.ones_like(audio_known)
    coord_known[:, 0] = False
    unknown = [rec.mic_ids.index(m) + 1 for m in opts.unknown_mics]
    coord_known[:, unknown] = False
    refine = opts.refine_radius > 0 and model.ngcc is not None
    fit = DelayedLagFit(rec, unknown, model.fs, opts, len(frames)) if refine else None
    xyz, confidence, mic_pred = np.empty((len(frames), 3)), np.empty(len(frames)), np.empty((len(frames), rec.n_mics, 3))  # filled in place
    written = 0  # rows of xyz and confidence filled (the fit answers frames late, static once)
    frame_batch = wav2pos_frame_batch(opts.device)
    generator = torch.Generator().manual_seed(opts.seed)
    with torch.no_grad():
        for s in range(0, len(frames), frame_batch):
            block = slice(s, s + frame_batch)
            out = predict_with_views(model, block_inputs(block), coords[block], audio_known[block], coord_known[block], 0 if refine else opts.views,
                                     generator, opts.precision)
            network = out["source"].cpu().numpy()
            network[silent[block]] = np.nan
            found, conf = fit.add(network, out["pair_probs"]) if fit else (network, out["confidence"].cpu().numpy())
            xyz[written : written + len(found)], confidence[written : written + len(found)] = found, conf
            written += len(found)
            mic_pred[block] = out["mics"].cpu().numpy()
            if on_progress:
                on_progress(min(s + frame_batch, len(frames)), len(frames))
        if fit:
            found, conf = fit.finish()
            xyz[written : written + len(found)], confidence[written : written + len(found)] = found, conf
            written += len(found)
    xyz, confidence = xyz[:written], confidence[:written]
    estimated = {rec.mic_ids[u - 1]: np.median(mic_pred[~silent, u - 1], axis=0) for u in unknown}
    times = frame_times(len(frames), n, opts.hop, rec.fs)
    if not fit:
        xyz, confidence = network_integrated(xyz, confidence, silent, opts, rec.fs)
    if opts.static:  # one position, at the mean time of the active frames
        times, silent = np.array([times[~silent].mean() if (~silent).any() else times.mean()]), np.array([silent.all()])
    xyz[silent] = np.nan
    known = int(rec.n_mics - len(unknown))
    notes = [] if refine or opts.refine_radius <= 0 else [f"{path} has no NGCC-PHAT features: positions are not refined"]
    notes += [note for note in [untrained_geometry(meta, rec.mics[[i for i in range(rec.n_mics) if i + 1 not in unknown]], path)] if note]
    return PositionTrack(times, xyz, np.where(silent, 0.0, confidence), np.full(len(times), known), notes, estimated)


def network_integrated(xyz: np.ndarray, confidence: np.ndarray, silent: np.ndarray, opts: Wav2PosOptions, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """The network's estimates (F, 3) over ``opts.window`` (a running median) or the whole recording
    (``opts.static``: their median, one row), with the confidences likewise."""
    xyz = np.where(silent[:, None], np.nan, xyz)
    if opts.static:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all silent: NaN, as wanted
            return np.nanmedian(xyz, axis=0)[None], np.array([np.mean(confidence[~silent]) if (~silent).any() else 0.0])
    window = window_frames(opts.window, opts.hop, fs, len(xyz))
    return (smooth_track(xyz, window), confidence) if window > 1 else (xyz, confidence)


class DelayedLagFit:
    """Refines wav2pos estimates block by block as they arrive, each starting from (and with its
    prior around) the median of the network's estimates over ``opts.start_window`` frames around it,
    as multilateration borrows the hypotheses of its neighbours: a frame waits for the
    ``start_window // 2`` frames after it, so only those frames' lag distributions are held. The
    pairs of mics at token rows ``unknown_rows`` (unknown positions) are left out of the fit."""

    def __init__(self, rec: Recording, unknown_rows: list[int], fs: int, opts: Wav2PosOptions, n_frames: int):
        from sslkit.localization.lagfit import LagFitOptions
        from sslkit.models.wav2pos import upper_pairs

        rows = upper_pairs(rec.n_mics, opts.device)  # the model's pair order; mic k is token row k + 1
        placed = torch.ones(rec.n_mics + 1, dtype=torch.bool, device=opts.device)
        placed[unknown_rows] = False
        self.pairs, self.valid = rows - 1, placed[rows].all(1)
        self.mics = torch.as_tensor(rec.mics, dtype=torch.float32, device=opts.device)
        self.bounds = torch.as_tensor(search_bounds(rec, opts.bounds), dtype=torch.float32, device=opts.device)
        self.fit_opts = LagFitOptions(radius=opts.refine_radius, c=opts.c)
        self.fs, self.window, self.half = fs, opts.start_window, opts.start_window // 2
        self.static = opts.static
        self.w = 0 if opts.static else window_frames(opts.window, at_rate(opts, fs).hop, fs, n_frames) // 2  # lag distributions averaged over ±w frames
        self.network = np.empty((0, 3))
        self.buffer = None  # lag distributions of frames buffer_start … received − 1
        self.buffer_start = 0
        self.total, self.count = None, 0  # static: sum and count of the active frames' distributions
        self.done = 0

    def refine(self, start, pair_probs):
        """Positions (F, 3) fitted from ``start`` (F, 3) to the lag distributions (F, M(M−1)/2, L),
        and their ``lag_fit_confidence`` (F,)."""
        from sslkit.localization.lagfit import fit_lag_distributions, lag_fit_confidence

        probs = pair_probs.float()
        refined = fit_lag_distributions(start, self.mics, self.pairs, probs, self.fs, self.bounds, self.fit_opts, self.valid)
        return refined, lag_fit_confidence(refined, self.mics, self.pairs, probs, self.fs, self.fit_opts, self.valid)

    def add(self, network: np.ndarray, pair_probs) -> tuple[np.ndarray, np.ndarray]:
        """Take a block's network estimates (F, 3) (NaN: silent) and lag distributions; → positions
        and confidences of the frames whose windows are now complete (static: none until ``finish``)."""
        self.network = np.concatenate([self.network, network])
        if self.static:
            active = torch.as_tensor(~np.isnan(network).any(axis=1), device=pair_probs.device)
            block = pair_probs[active].float().sum(dim=0)
            self.total, self.count = (block if self.total is None else self.total + block), self.count + int(active.sum())
            return np.empty((0, 3)), np.empty(0)
        self.buffer = pair_probs if self.buffer is None else torch.cat([self.buffer, pair_probs])
        return self.fit_until(len(self.network) - max(self.half, self.w))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and confidences of the last frames (their windows end with the recording);
        static: the one position, fitted to the distributions averaged over all active frames from
        the median of all the network's estimates."""
        if not self.static:
            return self.fit_until(len(self.network))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all silent: NaN start, answered NaN below
            start = np.nanmedian(self.network, axis=0)
        if self.total is None or not np.isfinite(start).all():
            return np.full((1, 3), np.nan), np.zeros(1)
        xyz, confidence = self.refine(torch.as_tensor(start[None], dtype=torch.float32, device=self.total.device), (self.total / self.count)[None])
        return xyz.cpu().numpy(), confidence.cpu().numpy()

    def fit_until(self, ready: int) -> tuple[np.ndarray, np.ndarray]:
        if ready <= self.done:
            return np.empty((0, 3)), np.empty(0)
        lo, hi = max(0, self.done - self.half), min(len(self.network), ready + self.half)
        starts = smooth_track(self.network[lo:hi], self.window)[self.done - lo : ready - lo]
        probs = self.averaged(self.done, ready)
        self.done = ready
        keep_from = max(self.buffer_start, ready - self.w)  # the frames later windows still need
        self.buffer, self.buffer_start = self.buffer[keep_from - self.buffer_start :], keep_from
        start = torch.as_tensor(np.nan_to_num(starts), dtype=torch.float32, device=probs.device)
        xyz, confidence = self.refine(start, probs)
        return xyz.cpu().numpy(), confidence.cpu().numpy()

    def averaged(self, first: int, last: int) -> torch.Tensor:
        """Lag distributions of frames first … last − 1, each the mean over the active frames within
        ±w of it (its own when none is active), from the buffer."""
        if self.w == 0:
            return self.buffer[first - self.buffer_start : last - self.buffer_start]
        lo, hi = max(self.buffer_start, first - self.w), min(len(self.network), last + self.w)
        block = self.buffer[lo - self.buffer_start : hi - self.buffer_start]  # (B, P, L)
        active = torch.as_tensor(~np.isnan(self.network[lo:hi]).any(axis=1), dtype=block.dtype, device=block.device)
        index = torch.arange(first, last, device=block.device) - lo
        total, count = window_sums(block * active[:, None, None], active, index, self.w)
        count = count[:, None, None]
        return torch.where(count > 0, total / count.clamp(min=1), block[index])


def check_wav2pos_input(model, meta: dict, rec: Recording, path, opts: Wav2PosOptions) -> None:
    """Sample rate, mic count within the training range, enough known mics, and mics inside the
    region the checkpoint was trained on."""
    check_sample_rate(rec.fs, model.fs, rec.path, str(path))
    rec.check_holds(model.n_samples, f"{path.name} window")
    low, high = meta.get("mic_range", (5, rec.n_mics))
    if not low <= rec.n_mics <= high:
        raise InputFileError(rec.path, f"{rec.n_mics} microphones, but {path} was trained on {low} to {high} (choose some with --use-mics)")
    unknown = set(opts.unknown_mics) - set(rec.mic_ids)
    if unknown:
        raise UserError(f"unknown_mics: no mic {sorted(unknown)[0]} in mics.csv (ids: {','.join(rec.mic_ids)})")
    if rec.n_mics - len(opts.unknown_mics) < MIN_KNOWN_MICS:
        raise UserError(f"wav2pos needs at least {MIN_KNOWN_MICS} microphones with known positions and audio")
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


