"""Simulate a resolved :class:`~sslkit.sims.scene.Scene` into a recording with pyroomacoustics.

RIRs are hybrid, as in gpuRIR or Habets' generator: exact image sources up to reflection order
``EARLY_ORDER`` (or the room's ``max_order`` if given), then a diffuse tail of exponentially
decaying Gaussian noise that continues the image-source energy at the room's RT60. Full-order
ISM for a 2 m high room at RT60 0.3 s needs order ~55 and ~0.75 s per source position; the
hybrid keeps the direct path and early reflections exact at a fraction of the cost.

Moving sources are simulated block-wise: the trajectory is sampled every ``scene.block`` seconds,
one image-source RIR is computed per block position, and the source signal is split by triangular
windows that sum to one, each window convolved with its block's RIR (overlap-add). A static source
is the one-block special case, so moving and static sources share one code path.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft

from sslkit.errors import ConfigError, GeometryError
from sslkit.recording import SILENCE_PEAK, Recording, SourceTrack
from sslkit.sims.noise import make_noise
from sslkit.sims.scene import RoomSpec, Scene, SourceSpec
from sslkit.sims.signals import render_signal
from sslkit.sims.trajectory import positions_at

EARLY_ORDER = 10
"""Image-source reflection order computed exactly when the room gives no ``max_order``."""
BLOCKS_PER_CHUNK = 32
"""Blocks convolved at once; bounds memory to about M × 32 × FFT length floats."""


def rir_global_delay() -> int:
    """pyroomacoustics delays every RIR by half its fractional-delay filter (40 samples by default)."""
    import pyroomacoustics as pra

    return int(pra.constants.get("frac_delay_length")) // 2


def make_room(spec: RoomSpec, fs: int, c: float, max_order: int | None = None):
    """A pyroomacoustics ShoeBox for ``spec``; RT60 goes through inverse Sabine.

    ``max_order`` caps the image-source order (the hybrid RIR's early part).
    """
    import pyroomacoustics as pra

    dims = np.array(spec.dimensions)
    if spec.rt60 is not None:
        try:
            absorption, sabine_order = pra.inverse_sabine(spec.rt60, dims, c=c)
        except ValueError:
            raise ConfigError(
                f"room {dims.tolist()} m cannot have an RT60 of {spec.rt60} s (inverse Sabine needs absorption > 1)"
            ) from None
        materials = pra.Material(absorption)
    elif spec.materials is not None:
        materials = {wall: pra.Material(m) for wall, m in spec.materials.items()}
    else:
        materials = pra.Material(0.2 if spec.absorption is None else spec.absorption)
    room = pra.ShoeBox(
        dims, fs=fs, materials=materials, max_order=EARLY_ORDER if max_order is None else int(max_order),
        air_absorption=spec.air_absorption, ray_tracing=spec.ray_tracing, use_rand_ism=False,
    )
    if spec.ray_tracing:
        room.set_ray_tracing()
    return room


def compute_rirs(
    spec: RoomSpec, fs: int, c: float, mics: np.ndarray, sources: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Hybrid RIRs from each source position to each mic, aligned so sample 0 is the emission time.

    Args:
        mics: (n_mics, 3) positions in metres.
        sources: (n_sources, 3) positions in metres.
        rng: draws the diffuse tail (one realisation per mic, shared by all source positions so
            that crossfaded blocks of a moving source keep one coherent tail).
    Returns:
        (n_mics, n_sources, length) array.
    """
    room = make_room(spec, fs, c, spec.max_order)
    rirs = _image_source_rirs(room, mics, sources)
    if spec.max_order is not None or spec.ray_tracing:
        return rirs
    return add_diffuse_tail(rirs, room.rt60_theory(), EARLY_ORDER * min(spec.dimensions) / c, fs, rng)


def add_diffuse_tail(rirs: np.ndarray, rt60: float, t_early: float, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Continue truncated image-source RIRs with exponentially decaying noise at ``rt60``.

    The tail's level is fitted to the RIR energy in [t_early/2, t_early] (where the truncated ISM
    is still complete); over that interval the ISM fades out and the tail fades in.
    Shape: rirs (n_mics, n_sources, length) → (n_mics, n_sources, max(length, rt60·fs)).
    """
    n_early = max(2, int(t_early * fs))
    length = max(rirs.shape[-1], int(rt60 * fs) + n_early)
    t = np.arange(length) / fs
    decay = np.exp(-3 * np.log(10) * t / rt60)  # amplitude envelope: -60 dB at rt60
    window = slice(n_early // 2, n_early)
    energy = np.mean(rirs[..., window] ** 2, axis=-1, keepdims=True)
    scale = np.sqrt(energy / np.mean(decay[window] ** 2))
    fade_in = np.clip((np.arange(length) - n_early // 2) / (n_early - n_early // 2), 0, 1)
    noise = rng.standard_normal((rirs.shape[0], 1, length))
    early = np.zeros((*rirs.shape[:2], length))
    early[..., : rirs.shape[-1]] = rirs
    return early * (1 - fade_in) + scale * noise * decay * fade_in


def _image_source_rirs(room, mics: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """pyroomacoustics RIRs with the global filter delay removed, (n_mics, n_sources, length)."""
    room.add_microphone_array(mics.T)
    for pos in sources:
        room.add_source(pos)
    room.compute_rir()
    delay = rir_global_delay()
    length = max(len(r) for per_mic in room.rir for r in per_mic) - delay
    out = np.zeros((len(mics), len(sources), length))
    for m, per_mic in enumerate(room.rir):
        for s, r in enumerate(per_mic):
            out[m, s, : len(r) - delay] = r[delay:]
    return out


def convolve_blocks(signal: np.ndarray, rirs: np.ndarray, hop: int) -> np.ndarray:
    """Convolve ``signal`` with time-varying RIRs crossfaded by triangular windows.

    Args:
        signal: (n,) source signal.
        rirs: (n_mics, n_blocks, length); block b is centred on sample b·hop.
        hop: block spacing in samples (ignored with one block).
    Returns:
        (n, n_mics) microphone signals, cut to the signal's length.
    """
    n = len(signal)
    n_mics, n_blocks, length = rirs.shape
    if n_blocks == 1:
        nfft = next_fast_len(n + length - 1)
        return irfft(rfft(signal, nfft)[None] * rfft(rirs[:, 0], nfft), nfft)[:, :n].T
    seg_len = 2 * hop
    padded = np.concatenate([np.zeros(hop), signal, np.zeros(n_blocks * hop + hop)])
    window = 1 - np.abs(np.arange(seg_len) - hop) / hop  # triangles at spacing hop sum to one
    nfft = next_fast_len(seg_len + length - 1)
    out = np.zeros((n_mics, (n_blocks + 1) * hop + nfft))
    for b0 in range(0, n_blocks, BLOCKS_PER_CHUNK):
        blocks = np.arange(b0, min(b0 + BLOCKS_PER_CHUNK, n_blocks))
        segs = padded[blocks[:, None] * hop + np.arange(seg_len)] * window  # (chunk, seg_len)
        y = irfft(rfft(segs, nfft)[None] * rfft(rirs[:, blocks], nfft), nfft)  # (M, chunk, nfft)
        for i, b in enumerate(blocks):  # overlap-add; segment b starts at padded sample b·hop
            out[:, b * hop : b * hop + nfft] += y[:, i]
    return out[:, hop : hop + n].T


def near_source_channel(signal: np.ndarray, distance: float, fs: int, c: float) -> np.ndarray:
    """What a mic ``distance`` metres from the source records: the delayed, 1/(4πr)-scaled signal."""
    n = len(signal)
    nfft = next_fast_len(2 * n)
    freqs = np.fft.rfftfreq(nfft, 1 / fs)
    delayed = irfft(rfft(signal, nfft) * np.exp(-2j * np.pi * freqs * distance / c), nfft)[:n]
    return delayed / (4 * np.pi * distance)


def check_inside(points: np.ndarray, dims: np.ndarray, what: str) -> None:
    """Raise GeometryError naming the first point of ``what`` outside the room (or on a wall)."""
    outside = np.any((points <= 0) | (points >= dims), axis=1)
    if np.any(outside):
        p = points[np.argmax(outside)]
        raise GeometryError(f"{what} at {np.round(p, 3).tolist()} is outside the room {dims.tolist()}")


MIN_SOURCE_MIC_M = 0.01
"""A source closer than this to a microphone is refused (the free-field 1/r gain diverges)."""


def check_apart_from_mics(points: np.ndarray, mics: np.ndarray, what: str) -> None:
    """Raise GeometryError when a point of ``what`` (N, 3) comes within ``MIN_SOURCE_MIC_M`` of a mic (M, 3)."""
    dist = np.linalg.norm(points[:, None] - mics[None], axis=-1)  # (N, M): N source blocks, M mics
    if dist.min() < MIN_SOURCE_MIC_M:
        k, m = np.unravel_index(dist.argmin(), dist.shape)
        raise GeometryError(f"{what} at {np.round(points[k], 3).tolist()} is {dist[k, m] * 100:.2g} cm from microphone {m + 1}: "
                            f"keep sources at least {MIN_SOURCE_MIC_M * 100:g} cm from the mics")


def block_count(n: int, hop: int, moving: bool) -> int:
    """Crossfade blocks over n samples every ``hop``: one for a static source."""
    return int(np.ceil((n - 1) / hop)) + 1 if moving else 1


def block_times(n: int, hop: int, fs: int, moving: bool) -> np.ndarray:
    """Centre times (s) of the crossfade blocks: one block for a static source."""
    return np.arange(block_count(n, hop, moving)) * hop / fs


def scene_blocks(scene: Scene) -> tuple[int, int]:
    """The recording's length and the crossfade hop, in samples."""
    return int(round(scene.duration * scene.fs)), max(1, int(round(scene.block * scene.fs)))


def block_positions(scene: Scene, src: SourceSpec) -> tuple[np.ndarray, np.ndarray]:
    """The centre times (T,) s of the simulation's crossfade blocks (one for a static source) and
    the positions (T, 3) of ``src`` at them."""
    n, hop = scene_blocks(scene)
    times = block_times(n, hop, scene.fs, src.moving)
    return times, positions_at(np.array(src.waypoints), src.speed, times)


def check_placement(scene: Scene) -> None:
    """Raise GeometryError when a mic is outside the room, or a source's path (its waypoints and its
    positions at the block times: a spline through waypoints near a wall can swing past it) leaves
    the room or passes within ``MIN_SOURCE_MIC_M`` of a mic."""
    dims, mics = np.array(scene.room.dimensions), np.array(scene.mics)
    check_inside(mics, dims, "microphone")
    for k, src in enumerate(scene.sources):
        positions = block_positions(scene, src)[1]
        check_inside(np.vstack([positions, src.waypoints]), dims, f"source {k}")
        check_apart_from_mics(positions, mics, f"source {k}")


def source_signal(src: SourceSpec, n: int, fs: int) -> np.ndarray:
    """The source's signal on the recording's time axis, zero outside its active interval."""
    start = int(round(src.start * fs))
    stop = n if src.length is None else min(n, start + int(round(src.length * fs)))
    out = np.zeros(n)
    if stop > start:
        out[start:stop] = render_signal(src.signal, (stop - start) / fs, fs) * 10 ** (src.gain_db / 20)
    return out


def ground_truth(scene: Scene) -> SourceTrack:
    """Positions of every active source every ``truth_hop`` seconds."""
    times = np.arange(0, scene.duration - 1e-9, scene.truth_hop)
    rows_t, rows_id, rows_xyz = [], [], []
    for k, src in enumerate(scene.sources):
        stop = scene.duration if src.length is None else src.start + src.length
        active = (times >= src.start) & (times < stop)
        rows_t.append(times[active])
        rows_id.append(np.full(active.sum(), k))
        rows_xyz.append(positions_at(np.array(src.waypoints), src.speed, times[active]))
    order = np.argsort(np.concatenate(rows_t), kind="stable")
    return SourceTrack(np.concatenate(rows_t)[order], np.concatenate(rows_id)[order], np.concatenate(rows_xyz)[order])


def simulate(scene: Scene, save_rirs: bool = False) -> tuple[Recording, dict[str, np.ndarray]]:
    """Simulate ``scene``; returns the recording and, if ``save_rirs``, the RIRs per source.

    The audio is aligned so that sample n holds sound emitted at n minus the propagation delay
    (the RIRs' global delay is removed), and noise is scaled to ``scene.snr_db`` relative to the
    mean reverberant signal power over the room microphones.
    """
    fs, c = scene.fs, scene.c
    mics = np.array(scene.mics)
    check_scene_size(scene)
    check_placement(scene)
    check_active_sources(scene)
    n, hop = scene_blocks(scene)
    truth = ground_truth(scene)
    clean = np.zeros((n, len(mics) + (scene.near_source is not None)))
    rirs_out = {}
    for k, src in enumerate(scene.sources):
        times, positions = block_positions(scene, src)
        rirs = compute_rirs(scene.room, fs, c, mics, positions, np.random.default_rng([scene.seed, k]))
        signal = source_signal(src, n, fs)
        clean[:, : len(mics)] += convolve_blocks(signal, rirs, hop)
        if k == 0 and scene.near_source is not None:
            clean[:, -1] = near_source_channel(signal, scene.near_source, fs, c)
        if save_rirs:
            rirs_out[f"source{k}"] = rirs.astype(np.float32)
            rirs_out[f"source{k}_times"] = times
    audio = clean + noise_for(scene, clean[:, : len(mics)], mics, n)
    near_pos = truth.of_source(0).xyz.mean(axis=0) + [scene.near_source or 0, 0, 0]
    all_mics = np.vstack([mics, near_pos]) if scene.near_source is not None else mics
    rec = Recording(audio.astype(np.float32), fs, scene.mic_ids, all_mics, truth, scene.to_dict())
    check_simulated(rec)
    return rec, rirs_out


WORKING_COPIES = 6
"""float64 copies of the (samples × channels) signal that one simulation holds at its peak
(clean sum, one source's convolution, noise, sum, float32 output) and the source signal."""
RIR_COPIES = 4
"""float64 copies of one source's (mics × positions × length) RIRs held at once (pyroomacoustics'
own, the aligned ISM, and the hybrid's fade products)."""
IMAGE_BYTES = 200
IMAGE_BYTES_PER_MIC = 24
IMAGE_BYTES_PER_POSITION = 180
"""pyroomacoustics' bookkeeping per image source: what it keeps for every source position and
what it holds while computing one position's RIRs to every mic (fitted to its peak memory)."""


def image_count(order: int) -> int:
    """Image sources of a shoebox up to reflection ``order``: lattice points with |i| + |j| + |k| ≤ order."""
    return (2 * order + 1) * (2 * order * order + 2 * order + 3) // 3


def rir_length(spec: RoomSpec, fs: int, c: float) -> int:
    """Samples of the RIRs ``compute_rirs`` returns for the room ``spec``, from above: the farthest
    image source's delay, and with the hybrid's diffuse tail the RT60 it decays over."""
    import pyroomacoustics as pra

    dims = np.array(spec.dimensions)
    order = EARLY_ORDER if spec.max_order is None else spec.max_order
    farthest = (order + 1) * dims.max() + np.linalg.norm(dims)  # metres: order reflections plus the room's diagonal
    length = int(farthest / c * fs) + int(pra.constants.get("frac_delay_length"))
    if spec.max_order is not None or spec.ray_tracing:
        return length
    n_early = int(EARLY_ORDER * dims.min() / c * fs)
    return max(length, int(make_room(spec, fs, c).rt60_theory() * fs) + n_early)


def source_bytes(spec: RoomSpec, n_mics: int, n_positions: int, length: int) -> float:
    """Memory one source's RIRs of ``length`` samples take: pyroomacoustics' image sources and the RIRs themselves."""
    order = EARLY_ORDER if spec.max_order is None else spec.max_order
    images = image_count(order) * (IMAGE_BYTES + IMAGE_BYTES_PER_MIC * n_mics + IMAGE_BYTES_PER_POSITION * n_positions)
    return images + n_mics * n_positions * length * 8 * RIR_COPIES


def check_scene_size(scene: Scene) -> None:
    """Refuse, before allocating, a scene whose signals, or one source's RIRs, would not fit in memory."""
    from sslkit.resources import check_memory

    n_channels = len(scene.mics) + (scene.near_source is not None)
    n, hop = scene_blocks(scene)
    positions = max(block_count(n, hop, src.moving) for src in scene.sources)
    needed = scene.duration * scene.fs * (n_channels + 1) * 8 * WORKING_COPIES
    check_memory(needed, f"a {scene.duration:g} s scene at {scene.fs} Hz with {n_channels} channels", "shorten the duration or simulate it in parts")
    length = rir_length(scene.room, scene.fs, scene.c)
    check_memory(needed + source_bytes(scene.room, len(scene.mics), positions, length),
                 f"the room's responses ({length / scene.fs:.3g} s long, to {len(scene.mics)} mics from {positions} source positions) with the signals",
                 "lower max_order or the RT60, or raise block (the seconds between a moving source's simulated positions)")


def check_active_sources(scene: Scene) -> None:
    """A scene in which no source sounds before the end would be silent: ConfigError."""
    starts = [src.start for src in scene.sources if src.length is None or src.length > 0]
    if not starts or min(starts) >= scene.duration:
        first = f" (the first starts at {min(starts):.2f} s)" if starts else ""
        raise ConfigError(f"no source is active within the {scene.duration:g} s duration{first}; lengthen the duration or start a source earlier")


def check_simulated(rec: Recording) -> None:
    """What simulate writes is finite, not silent, and has ground truth for its sources."""
    if not np.all(np.isfinite(rec.audio)):
        raise ConfigError("the simulation produced NaN or infinite samples; check the room's absorption and the SNR")
    if np.max(np.abs(rec.audio)) < SILENCE_PEAK:
        raise ConfigError("the simulation produced silent audio; check the sources' signals, gains and active intervals")
    if len(rec.sources.time) == 0:
        raise ConfigError("no source is active at any ground-truth hop; lengthen the duration or the sources' active intervals")


def noise_for(scene: Scene, reverberant: np.ndarray, mics: np.ndarray, n: int) -> np.ndarray:
    """Noise for every channel at the scene's SNR (zeros when snr_db is None)."""
    n_channels = len(mics) + (scene.near_source is not None)
    if scene.snr_db is None:
        return np.zeros((n, n_channels))
    rng = np.random.default_rng(scene.seed)
    noise = make_noise(scene.noise_kind, mics, n, scene.fs, rng, scene.c)
    if scene.near_source is not None:
        noise = np.hstack([noise, rng.standard_normal((n, 1))])
    signal_power = np.mean(reverberant**2)
    return noise * np.sqrt(signal_power / 10 ** (scene.snr_db / 10))
