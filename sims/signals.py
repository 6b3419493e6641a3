"""Source signals: bundled speech, synthesized music and noise, and users' own audio folders.

A resolved signal is a reference string that names its content exactly, so that a scene file
regenerates the same audio:

- ``speech/train:speech_03.flac@1.25`` — a bundled clip (``train`` or ``test`` split), starting
  1.25 s into the clip (files loop, so any offset plays the whole clip)
- ``music:1234`` — a melody synthesized from seed 1234 (even seeds train, odd seeds test)
- ``noise:white:7`` / ``noise:pink:7`` — seeded noise
- ``event:bell:7`` — a synthesized sound event (see :mod:`sslkit.sims.events`)
- ``file:/abs/path.wav@0.5`` — any audio file (``--audio-dir`` speech resolves to these)
- ``clip:dog:/abs/dog/12.wav@0.5`` — a clip of class ``dog`` from a class sub-folder of
  ``--audio-dir`` (e.g. FSD50K subsets): any signal kind named after a sub-folder draws from it
"""

from __future__ import annotations

import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from sslkit.errors import ConfigError

KINDS = ("speech", "music", "noise", "clapping", "telephone", "footsteps", "knock", "bell", "alarm", "water")
SPLITS = ("train", "test")
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
TEST_SPEAKER_MODULUS = 5
"""In a user's audio folder, a speaker (first sub-folder) is held out for test when crc32 % 5 == 0."""


def bundled_dir() -> Path:
    return Path(str(resources.files("sslkit.sims") / "signals"))


def bundled_speech(split: str) -> list[Path]:
    """The bundled espeak-ng speech clips of one split, sorted."""
    return sorted((bundled_dir() / split).glob("*.flac"))


def audio_folder(audio_dir: str | Path) -> Path:
    """``audio_dir`` as a Path; ConfigError when it is not a folder."""
    root = Path(audio_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: --audio-dir is not a folder")
    return root


def drawn_from(ref: str, audio_dir: str | Path) -> bool:
    """Whether the signal reference ``ref`` (:func:`draw_signal`'s) plays a file of ``audio_dir``."""
    return str(Path(audio_dir).resolve()) in ref


def user_audio(audio_dir: str | Path, split: str) -> list[Path]:
    """Audio files under ``audio_dir`` in the given split, split by speaker (first sub-folder;
    for a class folder: by recording or by file).

    Files directly in ``audio_dir`` count as their own speaker, so a flat folder is split by file.
    """
    root = audio_folder(audio_dir)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ConfigError(f"{root}: no wav/flac/ogg files in --audio-dir")

    def is_test(p: Path) -> bool:
        speaker = p.relative_to(root).parts[0]
        return zlib.crc32(speaker.encode()) % TEST_SPEAKER_MODULUS == 0

    chosen = [p for p in files if is_test(p) == (split == "test")]
    if not chosen:
        raise ConfigError(f"{root}: no files fall in the {split} split (split by first sub-folder, else by file: add more)")
    return chosen


def draw_signal(kind: str, rng: np.random.Generator, audio_dir: str | Path | None = None) -> str:
    """Resolve a signal kind such as ``speech``, ``music/test`` or a file path to a reference string."""
    name, _, split = kind.partition("/")
    split = split or "train"
    if audio_dir is not None and name and (Path(audio_dir) / name).is_dir():
        if split not in SPLITS:
            raise ConfigError(f"signal '{kind}': split must be train or test")
        path = rng.choice(user_audio(Path(audio_dir) / name, split)).resolve()
        return f"clip:{name}:{path}@{_random_offset(path, rng)}"
    if name not in KINDS:
        path = Path(kind).expanduser()
        if not path.is_file():
            raise ConfigError(f"signal '{kind}': not one of {', '.join(KINDS)} (with /train or /test) nor an audio file")
        return f"file:{path.resolve()}"
    if split not in SPLITS:
        raise ConfigError(f"signal '{kind}': split must be train or test")
    seed = int(rng.integers(0, 2**30))
    split_seed = 2 * seed + (split == "test")  # even seeds train, odd seeds test
    if name == "music":
        return f"music:{split_seed}"
    if name == "noise":
        return f"noise:pink:{split_seed}"
    if name != "speech":
        return f"event:{name}:{split_seed}"
    if audio_dir is not None:
        path = rng.choice(user_audio(audio_dir, split)).resolve()
        return f"file:{path}@{_random_offset(path, rng)}"
    clips = bundled_speech(split)
    path = clips[int(rng.integers(len(clips)))]
    return f"speech/{split}:{path.name}@{_random_offset(path, rng)}"


def _random_offset(path: Path, rng: np.random.Generator) -> float:
    """A start time drawn uniformly within the clip, rounded to 1 ms so that references stay short."""
    import soundfile as sf

    return round(float(rng.uniform(0, sf.info(path).duration)), 3)


def render_signal(ref: str, duration: float, fs: int) -> np.ndarray:
    """The signal named by ``ref`` at ``fs``, looped or cut to ``duration`` seconds, unit peak."""
    n = int(round(duration * fs))
    kind, _, arg = ref.partition(":")
    if kind == "music":
        x = synth_music(int(arg), duration, fs)
    elif kind == "noise":
        color, _, seed = arg.partition(":")
        x = colored_noise(np.random.default_rng(int(seed)), n, color)
    elif kind == "event":
        from sslkit.sims.events import synth_event

        name, _, seed = arg.partition(":")
        x = synth_event(name, int(seed), duration, fs)
    elif kind.startswith("speech/") or kind in ("file", "clip"):
        if kind == "clip":
            arg = arg.partition(":")[2]  # drop the class name
        name, _, offset = arg.rpartition("@") if "@" in arg else (arg, "", "0")
        path = bundled_dir() / kind.split("/")[1] / name if kind.startswith("speech/") else Path(name)
        x = np.roll(load_mono(path, fs), -int(float(offset) * fs))
    else:
        raise ConfigError(f"unknown signal reference '{ref}'")
    x = np.resize(x, n)  # loops a short clip
    peak = np.max(np.abs(x))
    return (x / peak if peak > 0 else x).astype(np.float64)


def load_mono(path: Path, fs: int) -> np.ndarray:
    """Read an audio file, mix to mono and resample to ``fs``."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        x, file_fs = sf.read(path, dtype="float64", always_2d=True)
    except Exception as err:
        raise ConfigError(f"{path}: not a readable audio file ({err})") from None
    x = x.mean(axis=1)
    if file_fs != fs:
        g = np.gcd(int(file_fs), int(fs))
        x = resample_poly(x, fs // g, file_fs // g)
    return x


def colored_noise(rng: np.random.Generator, n: int, color: str = "white") -> np.ndarray:
    """White or pink (1/f power) Gaussian noise of length n, unit variance."""
    x = rng.standard_normal(n)
    if color == "pink":
        spec = np.fft.rfft(x)
        f = np.arange(len(spec))
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    elif color != "white":
        raise ConfigError(f"unknown noise colour '{color}' (white or pink)")
    return x / (np.std(x) + 1e-12)


def synth_music(seed: int, duration: float, fs: int) -> np.ndarray:
    """A melody, a bass line and a drum track, drawn from ``seed``.

    Notes come from a random major or minor scale; each has 4–16 decaying harmonics, a slight
    vibrato and an attack/decay envelope. Drums (kick, snare and hi-hat: a pitch-swept sine and
    decaying noise bursts) make the signal broadband and transient, like real music; purely
    harmonic tones leave most frequency bins to noise, which starves PHAT-weighted correlation.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * fs))
    out = np.zeros(n)
    tonic = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10])
    beat = rng.uniform(0.15, 0.4)
    n_harm = int(rng.integers(4, 17))
    harm_decay = rng.uniform(0.5, 0.85)
    for voice_octave, beats_per_note in ((2, 1), (0, 4)):  # melody and bass line
        t0 = 0.0
        while t0 < duration:
            length = beat * beats_per_note * rng.choice([1, 1, 2])
            f0 = tonic * 2 ** (voice_octave + scale[int(rng.integers(0, 7))] / 12)
            i0, i1 = int(t0 * fs), min(n, int((t0 + length) * fs))
            t = np.arange(i1 - i0) / fs
            phase = 2 * np.pi * f0 * np.cumsum(1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)) / fs
            k = np.arange(1, n_harm + 1)[:, None]
            audible = (k[:, 0] * f0 < fs / 2)[:, None]
            tone = (audible * harm_decay ** (k - 1) * np.sin(k * phase)).sum(axis=0)
            envelope = np.minimum(t / 0.01, 1) * np.exp(-t * rng.uniform(2, 6))
            out[i0:i1] += tone * envelope * (0.5 if voice_octave == 0 else 1.0)
            t0 += length
    return out / (np.max(np.abs(out)) + 1e-12) + 0.7 * _drums(rng, n, fs, beat)


def _drums(rng: np.random.Generator, n: int, fs: int, beat: float) -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, hi-hat on every half beat (some skipped), unit peak."""
    out = np.zeros(n)
    hits = {
        "kick": (np.arange(0, n / fs, 2 * beat), 0.25),
        "snare": (np.arange(beat, n / fs, 2 * beat), 0.15),
        "hat": (np.arange(0, n / fs, beat / 2), 0.05),
    }
    for name, (times, decay_s) in hits.items():
        length = int(5 * decay_s * fs)
        t = np.arange(length) / fs
        for start in times:
            if name == "hat" and rng.random() < 0.3:
                continue
            if name == "kick":
                sound = np.sin(2 * np.pi * (50 * t + 60 * (1 - np.exp(-t / 0.03)) * 0.03))
            else:
                sound = rng.standard_normal(length) * (0.4 if name == "hat" else 1.0)
                if name == "hat":
                    sound = np.diff(sound, prepend=0.0)  # brighter: first difference tilts the spectrum up
            i0 = int(start * fs)
            seg = sound * np.exp(-t / decay_s) * rng.uniform(0.6, 1.0)
            out[i0 : i0 + length] += seg[: max(0, min(length, n - i0))]
    return out / (np.max(np.abs(out)) + 1e-12)
