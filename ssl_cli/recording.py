"""Recording folders, the lingua franca of sslkit: ``audio.wav + mics.csv + sources.csv + scene.yaml``.

Every command reads and writes recordings through this module. All writes are atomic (temp file, then
rename) so that an interrupted or failed command never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslkit.errors import InputFileError, SslkitWarning
from sslkit.files import atomic_dir, atomic_file, read_csv_columns, read_table, read_yaml, write_csv, write_yaml
from sslkit.geometry import check_geometry, check_metres

AUDIO_FILE = "audio.wav"
MICS_FILE = "mics.csv"
SOURCES_FILE = "sources.csv"
SCENE_FILE = "scene.yaml"
SILENCE_PEAK = 1e-7
"""Audio whose absolute peak is below this is treated as all-silent."""
CLIP_LEVEL = 0.999
"""Samples at or above this share of their channel's peak magnitude may be clipped."""
CLIPPED_SHARE = 1e-3
"""Share of clipped samples from which a recording is reported as clipped."""


@dataclass
class Recording:
    """A multichannel recording with microphone positions and optional ground truth.

    Attributes:
        audio: float32 samples, shape (n_samples, n_mics).
        fs: sampling rate in Hz.
        mic_ids: identifiers of the channels, length n_mics, in channel order.
        mics: microphone positions in metres, shape (n_mics, 3).
        sources: ground truth, or None; see :class:`SourceTrack`.
        scene: the resolved scene description, or an empty dict.
        path: folder or wav the recording was read from.
        source_signal: the near-source channel once split off (see ``room_channels``), or None.
    """

    audio: np.ndarray
    fs: int
    mic_ids: list[str]
    mics: np.ndarray
    sources: SourceTrack | None = None
    scene: dict = field(default_factory=dict)
    path: Path | None = None
    source_signal: np.ndarray | None = None
    """The near-source channel split off by :func:`room_channels` (n_samples,), or None."""

    @property
    def n_mics(self) -> int:
        return self.audio.shape[1]

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.fs

    def check_holds(self, samples: int, what: str) -> None:
        """InputFileError naming the recording when its audio is shorter than ``samples`` (one ``what``)."""
        if len(self.audio) < samples:
            raise InputFileError(self.path or "the recording", f"the audio ({len(self.audio)} samples) is shorter than one {what} ({samples} samples)")

    def resampled(self, fs: int) -> Recording:
        """The recording at ``fs`` Hz (scipy's polyphase resampler; the near-source signal too)."""
        if fs == self.fs:
            return self
        from dataclasses import replace

        convert = lambda x: resample_audio(x, self.fs, fs)  # noqa: E731
        return replace(self, audio=convert(self.audio), fs=fs, source_signal=None if self.source_signal is None else convert(self.source_signal))


def resample_audio(audio: np.ndarray, fs: int, to_fs: int) -> np.ndarray:
    """Audio (samples, channels) at ``fs`` Hz → float32 at ``to_fs`` Hz (scipy's polyphase resampler)."""
    from math import gcd

    from scipy.signal import resample_poly  # a second to import: only when needed

    g = gcd(fs, to_fs)
    return resample_poly(audio, to_fs // g, fs // g, axis=0).astype(np.float32)


@dataclass
class SourceTrack:
    """Ground-truth source positions: one row per hop and active source, or one row for a static
    source active throughout.

    Attributes:
        time: seconds from the start of the recording, shape (n_rows,).
        source_id: integer source identifiers, shape (n_rows,).
        xyz: positions in metres in the frame of ``mics.csv``, shape (n_rows, 3).
    Rows are kept ordered by time, then source (given in any order): interpolating a track needs its times in order.
    """

    time: np.ndarray
    source_id: np.ndarray
    xyz: np.ndarray

    def __post_init__(self) -> None:
        time, source_id, xyz = np.asarray(self.time), np.asarray(self.source_id), np.asarray(self.xyz)
        order = np.lexsort((source_id, time))
        self.time, self.source_id, self.xyz = time[order], source_id[order], xyz[order]

    def of_source(self, source_id: int) -> SourceTrack:
        keep = self.source_id == source_id
        return SourceTrack(self.time[keep], self.source_id[keep], self.xyz[keep])

    def active_span(self, source_id: int) -> tuple[float, float]:
        """Seconds (first, last) in which a source is active; a source listed once (a static source,
        as measured datasets list them) is active throughout the recording."""
        times = self.time[self.source_id == source_id]
        return (-np.inf, np.inf) if len(times) == 1 else (float(times.min()), float(times.max()))

    @property
    def ids(self) -> np.ndarray:
        """The source ids, ascending (S,)."""
        return np.unique(self.source_id)

    def positions_at(self, times: np.ndarray) -> np.ndarray:
        """Every source's position at ``times`` (T,) s, interpolated linearly in time, NaN where it is
        not active (:meth:`active_span`): (T, S, 3) metres, sources in the order of :attr:`ids`."""
        times = np.asarray(times, dtype=float)
        out = np.full((len(times), len(self.ids), 3), np.nan)
        for s, sid in enumerate(self.ids):
            first, last = self.active_span(sid)
            active = (times >= first - 1e-9) & (times <= last + 1e-9)
            out[active, s] = self.of_source(sid).held_positions(times[active])
        return out

    def held_positions(self, times: np.ndarray) -> np.ndarray:
        """The position (T, 3) m of the track's one source, whatever its id, at ``times`` (T,) s:
        interpolated, and held at its first and last rows before and after them (a simulated
        scene lists its sources up to its last hop). ValueError when the track has several sources."""
        (sid,) = self.ids
        own = self.of_source(sid)
        return np.stack([np.interp(times, own.time, own.xyz[:, k]) for k in range(3)], axis=1)


# ---------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------
def read_audio(path: str | os.PathLike, allow_silent: bool = False) -> tuple[np.ndarray, int]:
    """Read a wav/flac file as float32 of shape (n_samples, n_channels) and validate its content.

    Raises InputFileError for a missing, empty or non-audio file, NaN/inf samples, or all-silent
    audio (unless ``allow_silent``); warns (SslkitWarning) about a truncated WAV file (read as far
    as it goes), clipped audio, and dead or duplicated channels.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such audio file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "audio file is empty")
    try:
        info = sf.info(path)
        check_audio_size(path, info.frames, info.channels)
        audio, fs = sf.read(path, dtype="float32", always_2d=True)
    except InputFileError:
        raise
    except Exception as err:  # soundfile raises several types for bad/truncated files
        raise InputFileError(path, f"not a readable audio file ({str(err).splitlines()[0]})") from None
    if audio.shape[0] == 0:
        raise InputFileError(path, "audio file has no samples")
    if not np.all(np.isfinite(audio)):
        raise InputFileError(path, "audio contains NaN or infinite samples")
    channel_peak = np.abs(audio).max(axis=0)  # (n_channels,), shared by the checks below
    peak = float(channel_peak.max())
    if not allow_silent and peak < SILENCE_PEAK:
        raise InputFileError(path, "audio is all silent (every sample is zero)" if peak == 0 else f"audio is all silent (peak {peak:.2g}, below {SILENCE_PEAK:g})")
    declared = wav_declared_frames(path)
    if declared is not None and declared > len(audio):
        warnings.warn(SslkitWarning(f"{path}: truncated: its header declares {declared} samples per channel, the file holds {len(audio)}; "
                                    "using those"), stacklevel=2)
    clipped = clipped_share(audio, channel_peak)
    if clipped >= CLIPPED_SHARE:
        warnings.warn(SslkitWarning(f"{path}: clipped: {clipped:.1%} of the samples are at full scale; TDOAs may suffer"), stacklevel=2)
    if peak >= SILENCE_PEAK:
        for problem in channel_problems(audio, channel_peak):
            warnings.warn(SslkitWarning(f"{path}: {problem}"), stacklevel=2)
    return audio, int(fs)


EMPTY_BAND_DB = 70.0
"""A frequency whose long-term power is this far below the strongest holds nothing (see :func:`occupied_band_hz`)."""
EMPTY_GAP_HZ = 1000.0
"""An empty stretch at least this wide ends the band a recording occupies."""


def phat_max_freq(rec: Recording, max_freq: float | None) -> float:
    """The highest frequency (Hz) of ``rec`` that PHAT-weighted methods keep: ``max_freq`` when
    given; else the band ``rec`` occupies (:func:`occupied_band_hz`), all of it unless its top is
    empty (upsampled audio), where whitening would weigh the empty band as much as the signal: then
    with a warning."""
    nyquist = rec.fs / 2
    if max_freq is not None:
        if not 0 < max_freq <= nyquist:
            raise InputFileError(rec.path, f"max_freq = {max_freq:g} Hz is outside its band (0, {nyquist:g}] Hz at {rec.fs} Hz")
        return float(max_freq)
    top = occupied_band_hz(rec.audio, rec.fs)
    if top < nyquist:
        warnings.warn(SslkitWarning(f"{rec.path or 'the recording'}: holds nothing above {top / 1000:.3g} kHz of its {nyquist / 1000:.3g} kHz band (more than "
                                    f"{EMPTY_BAND_DB:g} dB below its strongest; upsampled?): PHAT uses 0–{top / 1000:.3g} kHz only "
                                    "(max_freq sets the band)"), stacklevel=3)
    return top


def occupied_band_hz(audio: np.ndarray, fs: int, frame: int = 2048, frames: int = 64) -> float:
    """The top (Hz) of the band that audio (samples, channels) occupies: where the first stretch of
    at least ``EMPTY_GAP_HZ`` above the strongest frequency begins whose long-term power is more
    than ``EMPTY_BAND_DB`` below the strongest; fs/2 when there is none. Long-term power: Hann-windowed
    spectra of up to ``frames`` frames spread over the recording (each less its mean), averaged over frames and channels.
    Upsampled audio is empty above its original band but for the resampler's images of the
    signal, which can rise above the threshold further up: the first gap, not the last
    occupied frequency, marks the band."""
    gap = round(EMPTY_GAP_HZ * frame / fs)
    if len(audio) < frame or gap > frame // 2:
        return fs / 2
    starts = np.linspace(0, len(audio) - frame, min(frames, len(audio) // frame)).astype(int)
    chunks = np.stack([audio[s : s + frame] for s in starts])  # (frames, frame, channels)
    windowed = (chunks - chunks.mean(axis=1, keepdims=True)) * np.hanning(frame)[:, None]  # a DC offset is not the band
    power = (np.abs(np.fft.rfft(windowed, axis=1)) ** 2).mean(axis=(0, 2))
    empty = power < power.max() * 10 ** (-EMPTY_BAND_DB / 10)
    gaps = np.flatnonzero(np.lib.stride_tricks.sliding_window_view(empty, gap).all(axis=1))
    gaps = gaps[gaps > power.argmax()]
    return float((gaps[0] - 1) * fs / frame) if len(gaps) else fs / 2


def channel_problems(audio: np.ndarray, channel_peak: np.ndarray) -> list[str]:
    """What is wrong with single channels of audio (n_samples, n_channels) that is not all silent,
    given each channel's absolute peak (n_channels,): channels silent throughout (a dead mic), and
    channels identical sample for sample to another (one signal written twice), whose pairs would
    read a TDOA of 0 wherever the source is."""
    problems = []
    silent = np.flatnonzero(channel_peak < SILENCE_PEAK) + 1
    if len(silent):
        problems.append(f"channel(s) {', '.join(map(str, silent))} silent throughout (a dead mic?); their pairs carry nothing: "
                        "leave them out (use_mics)")
    first_of: dict[bytes, int] = {}
    copies = []
    for k in range(audio.shape[1]):
        if k + 1 in silent:
            continue
        digest = hashlib.blake2b(np.ascontiguousarray(audio[:, k]).tobytes(), digest_size=16).digest()
        if digest in first_of:
            copies.append((first_of[digest], k))
        else:
            first_of[digest] = k
    if copies:
        problems.append(f"{', '.join(f'channel {k + 1} is channel {j + 1}' for j, k in copies)} sample for sample (one signal written "
                        "twice?); their pairs read a TDOA of 0 wherever the source is")
    return problems


def clipped_share(audio: np.ndarray, channel_peak: np.ndarray) -> float:
    """Share of the samples (n_samples, n_channels) that sit in flat runs of 3 or more equal values
    at their channel's absolute peak ``channel_peak`` (n_channels,): the mark of hard clipping, at
    any scale or sample format."""
    mid = audio[1:-1]
    flat = (mid == audio[:-2]) & (mid == audio[2:]) & (np.abs(mid) >= CLIP_LEVEL * channel_peak) & (channel_peak > 0)
    return float(flat.sum() / audio.size)


def check_audio_size(path: Path, frames: int, channels: int) -> None:
    """Refuse audio whose float32 samples would not fit in memory, before reading it."""
    from sslkit.resources import check_memory

    check_memory(frames * channels * 4, f"{path}: {frames} samples × {channels} channels", "use a shorter excerpt")


def wav_declared_frames(path: Path) -> int | None:
    """Samples per channel that a RIFF/WAVE header declares (None for other formats or streamed WAVs)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while chunk := f.read(8):
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"fmt ":
                block_align = int.from_bytes(f.read(16)[12:14], "little")
                f.seek(size - 16 + size % 2, os.SEEK_CUR)
            elif name == b"data":
                return None if not block_align or size >= 0xFFFFFFF0 else size // block_align
            else:
                f.seek(size + size % 2, os.SEEK_CUR)
    return None


def write_audio(path: str | os.PathLike, audio: np.ndarray, fs: int) -> None:
    """Write float32 multichannel audio (n_samples, n_channels) as a WAV file, atomically."""
    import soundfile as sf

    with atomic_file(path) as tmp:
        sf.write(tmp, np.asarray(audio, dtype=np.float32), fs, subtype="FLOAT", format="WAV")


# ---------------------------------------------------------------------------------------------
# CSV tables
# ---------------------------------------------------------------------------------------------
def read_mics(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read ``mics.csv`` (``mic_id,x,y,z`` in metres; positions checked by ``check_geometry``) → (ids, positions (n_mics, 3))."""
    path = Path(path)
    header, rows = read_table(path, ["mic_id", "x", "y", "z"])
    if not rows:
        raise InputFileError(path, "no microphone rows")
    cols = read_csv_columns(path, ["x", "y", "z"])
    xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=1)
    check_geometry(xyz, path)
    ids = [row[header.index("mic_id")].strip() if len(row) > header.index("mic_id") else "" for row in rows]
    if "" in ids:
        raise InputFileError(path, f"line {ids.index('') + 2}: empty mic_id")
    if len(set(ids)) != len(ids):
        raise InputFileError(path, "duplicate mic_id values")
    return ids, xyz


def write_mics(path: str | os.PathLike, ids: Sequence[str], xyz: np.ndarray) -> None:
    write_csv(path, ["mic_id", "x", "y", "z"], ([i, *map(float, p)] for i, p in zip(ids, xyz)))


def read_sources(path: str | os.PathLike) -> SourceTrack:
    """Read ``sources.csv`` (``time,source_id,x,y,z``)."""
    cols = read_csv_columns(Path(path), ["time", "source_id", "x", "y", "z"])
    if not all(np.all(np.isfinite(v)) for v in cols.values()):
        raise InputFileError(path, "contains NaN or empty values")
    ids = cols["source_id"]
    if not np.all((ids == np.round(ids)) & (np.abs(ids) < 2**31)):
        raise InputFileError(path, "source_id must be an integer on every row")
    check_metres(np.stack([cols["x"], cols["y"], cols["z"]], axis=1), path)
    track = SourceTrack(cols["time"], cols["source_id"].astype(int), np.stack([cols["x"], cols["y"], cols["z"]], axis=1))
    repeated = (np.diff(track.time) == 0) & (np.diff(track.source_id) == 0)
    if repeated.any():
        k = int(np.argmax(repeated))
        raise InputFileError(path, f"source {track.source_id[k]} is listed twice at time {track.time[k]:g} s")
    return track


def write_sources(path: str | os.PathLike, track: SourceTrack) -> None:
    rows = (
        [float(t), int(s), *map(float, p)] for t, s, p in zip(track.time, track.source_id, track.xyz)
    )
    write_csv(path, ["time", "source_id", "x", "y", "z"], rows)


# ---------------------------------------------------------------------------------------------
# Whole recordings
# ---------------------------------------------------------------------------------------------
def recording_folders(path: str | os.PathLike) -> list[Path]:
    """A recording folder, or the recording folders inside ``path`` (a dataset, sorted); an InputFileError when there are none."""
    path = Path(path)
    folders = [path] if (path / AUDIO_FILE).is_file() else sorted(p for p in path.glob("*") if (p / AUDIO_FILE).is_file())
    if not folders:
        raise InputFileError(path, "no such folder" if not path.exists() else "no recording folders")
    return folders


def load_recording(path: str | os.PathLike, mics: str | os.PathLike | None = None) -> Recording:
    """A recording as localization uses it: its room mics, with a near-source channel (scene.yaml
    ``near_source``) split off into ``source_signal`` (see :func:`read_recording` and
    :func:`room_channels`); InputFileError when fewer than two room mics are left, as no pair forms."""
    rec = room_channels(read_recording(path, mics))
    if rec.n_mics < 2:
        raise InputFileError(path, f"{rec.n_mics} room microphone: time differences and localization need at least two")
    return rec


def check_seconds(sources: SourceTrack, duration: float, path: Path) -> None:
    """Warn when the ground truth runs far past the audio's ``duration`` (s): times in milliseconds,
    or another recording's truth, would be matched to the estimates by time all the same."""
    last = float(sources.time.max()) if len(sources.time) else 0.0
    if last > 2 * duration + 1.0:
        within = float(np.mean(sources.time <= duration))
        warnings.warn(SslkitWarning(f"{path}: its times run to {last:.6g} s but the audio lasts {duration:.3g} s ({within:.1%} of its rows "
                                    f"fall within it); sslkit reads seconds, and in milliseconds they would run to {last / 1000:.3g} s"), stacklevel=3)


def read_recording(path: str | os.PathLike, mics: str | os.PathLike | None = None) -> Recording:
    """Read a recording folder, or a wav file plus a ``mics.csv``, with all its channels.

    ``path`` is a folder holding ``audio.wav`` and ``mics.csv`` (and optionally ``sources.csv``,
    ``scene.yaml``) or a multichannel audio file; ``mics`` overrides the mic file. The channel
    count must equal the number of rows in the mic file.
    """
    path = Path(path)
    if path.is_dir():
        audio_path = path / AUDIO_FILE
        folder = path
    elif path.exists():
        audio_path, folder = path, path.parent
    else:
        raise InputFileError(path, "no such recording folder or audio file")
    mics_path = Path(mics) if mics is not None else folder / MICS_FILE
    if mics is None and not mics_path.is_file():
        raise InputFileError(path, f"no {MICS_FILE} beside the audio; give the mic positions file")
    audio, fs = read_audio(audio_path)
    mic_ids, xyz = read_mics(mics_path)
    if audio.shape[1] != len(mic_ids):
        raise InputFileError(
            audio_path, f"has {audio.shape[1]} channels but {mics_path} lists {len(mic_ids)} microphones"
        )
    sources = read_sources(folder / SOURCES_FILE) if (folder / SOURCES_FILE).is_file() else None
    if sources is not None:
        check_metres(np.vstack([xyz, sources.xyz]), f"{mics_path} and {folder / SOURCES_FILE}")
        check_seconds(sources, len(audio) / fs, folder / SOURCES_FILE)
    scene = read_yaml(folder / SCENE_FILE) if (folder / SCENE_FILE).is_file() else {}
    if not isinstance(scene, (dict, type(None))):
        raise InputFileError(folder / SCENE_FILE, "expected a mapping of scene keys")
    return Recording(audio, fs, mic_ids, xyz, sources, scene or {}, path)


def save_recording(folder: str | os.PathLike, rec: Recording, extra: dict[str, np.ndarray] | None = None, overwrite: bool = False) -> Path:
    """Write a recording folder atomically (the folder appears complete or not at all).

    ``extra`` maps file names to arrays saved together in one ``.npz`` (e.g. ``rirs.npz``). An
    existing folder is replaced only with ``overwrite`` and only if sslkit wrote all of it.
    """
    folder = Path(folder)
    with atomic_dir(folder, overwrite) as tmp:
        write_audio(tmp / AUDIO_FILE, rec.audio, rec.fs)
        write_mics(tmp / MICS_FILE, rec.mic_ids, rec.mics)
        if rec.sources is not None:
            write_sources(tmp / SOURCES_FILE, rec.sources)
        write_yaml(tmp / SCENE_FILE, rec.scene)
        for name, arrays in (extra or {}).items():
            with atomic_file(tmp / name) as npz, open(npz, "wb") as f:
                np.savez_compressed(f, **arrays)
    return folder


def room_channels(rec: Recording) -> Recording:
    """The recording without its near-source channel (a mic that moves with the source, as the
    12th LuViRA mic): its mics.csv position is only the mean of the track, so it must not enter
    TDOA geometry. Its signal is kept as ``source_signal``. Recordings without one (or already
    split) are returned unchanged."""
    if not rec.scene.get("near_source"):
        return rec
    keep = slice(0, rec.n_mics - 1)
    scene = {**rec.scene, "near_source": None}  # split once: the result has no near-source channel
    return Recording(rec.audio[:, keep], rec.fs, rec.mic_ids[keep], rec.mics[keep], rec.sources, scene, rec.path, rec.audio[:, -1])
