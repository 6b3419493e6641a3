"""How well the measured spheres' reference directions are known: the direct-path direction of each
loudspeaker of ``../shared/real/sofia-sphere`` estimated from its measured impulse responses alone,
by two textbook methods that share no code with sslkit.

- Onset fits: each channel's onset is the first sample (8× band-limited upsampling) at which the
  response reaches a fraction of its peak (5 %, 10 %, 20 %, 50 %, 70 %) or the peak itself; a
  plane wave (azimuth, elevation, emission time; c = 343 m/s) is fitted to the onsets by least squares.
- Steered response of the impulse responses per band: Σ_k |Σ_m W_m(k) e^{j2πf_k τ_m(u)}|² over the
  bins of one band, W the PHAT-whitened spectrum of mic m and τ_m(u) its plane-wave arrival
  advance, maximised over a 0.5° azimuth × elevation grid within 6° of the reference, then a 0.05°
  grid within 0.5° of that maximum.

    python benchmarks/sphere_directions.py > benchmarks/results/sphere_directions.json

Prints one row per loudspeaker (azimuth and elevation in degrees for every onset level and band)
and the README's fitted reference. Skips (prints a note) when ../shared/real is absent.
"""

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.optimize import least_squares
from scipy.signal import resample

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "sofia-sphere"
REFERENCE_DEG = {  # shared/real/README.md: the fitted (azimuth, elevation)
    ("a4-open-r0.25-86ch", 1): (180.4, 3.7),
    ("a3-rigid-r0.0875-110ch", 1): (45.6, 0.6), ("a3-rigid-r0.0875-110ch", 2): (16.2, 0.8),
    ("a3-rigid-r0.0875-110ch", 3): (346.0, 1.0), ("a3-rigid-r0.0875-110ch", 4): (316.1, 1.3),
}
ONSET_LEVELS = (0.05, 0.1, 0.2, 0.5, 0.7, 1.0)
"""Fractions of each channel's peak whose first crossing is its onset (1.0: the peak)."""
BANDS_HZ = ((100, 1000), (1000, 3000), (3000, 8000), (8000, 20000), (100, 8000), (100, 20000))
SPEED_OF_SOUND = 343.0
UPSAMPLE = 8
GRIDS_DEG = ((0.5, 6.0), (0.05, 0.5))
"""(step, half-width) of the two direction grids of the steered response, the second around the first's maximum."""


def unit(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def onset_fit(responses: np.ndarray, fs: int, mics: np.ndarray, level: float, start_deg: tuple[float, float]) -> tuple[float, float]:
    """Plane-wave (azimuth, elevation) fitted to the channels' onsets at ``level`` of their peaks."""
    upsampled = np.abs(resample(responses, UPSAMPLE * len(responses), axis=0))
    onsets_ms = 1e3 * np.argmax(upsampled >= level * upsampled.max(0) * (1 - 1e-9), axis=0) / (UPSAMPLE * fs)
    residual = lambda p: p[0] - 1e3 * mics @ unit(p[1], p[2]) / SPEED_OF_SOUND - onsets_ms  # noqa: E731
    fit = least_squares(residual, [onsets_ms.mean(), *start_deg], x_scale="jac")
    return float(fit.x[1] % 360), float(fit.x[2])


def band_steered(responses: np.ndarray, fs: int, mics: np.ndarray, band: tuple[float, float], start_deg: tuple[float, float]) -> tuple[float, float]:
    """(azimuth, elevation) of the highest PHAT steered response of the impulse responses in ``band`` Hz."""
    spectra = np.fft.rfft(responses, 4096, axis=0)  # (K, M)
    freqs = np.fft.rfftfreq(4096, 1 / fs)
    keep = (freqs >= band[0]) & (freqs < band[1])
    whitened, freqs = spectra[keep] / np.maximum(np.abs(spectra[keep]), 1e-12), freqs[keep]
    best = start_deg
    for step, half in GRIDS_DEG:
        offsets = np.arange(-half, half + step / 2, step)
        azimuth, elevation = (g.ravel() for g in np.meshgrid(best[0] + offsets, best[1] + offsets, indexing="ij"))
        advance = unit(azimuth, elevation) @ mics.T / SPEED_OF_SOUND  # (G, M) s earlier than at the centre
        power = sum(np.abs(np.exp(-2j * np.pi * f * advance) @ w) ** 2 for w, f in zip(whitened, freqs))
        best = (float(azimuth[power.argmax()]), float(elevation[power.argmax()]))
    return best[0] % 360, best[1]


def main() -> None:
    if not REAL.is_dir():
        print(json.dumps({"skipped": f"{REAL} is absent"}))
        return
    rows = []
    for (array, source), reference in REFERENCE_DEG.items():
        responses, fs = sf.read(REAL / array / f"rir_source_{source}.wav", dtype="float64")
        mics = np.loadtxt(REAL / array / "mics.csv", delimiter=",", skiprows=1)[:, 1:]
        mics = mics - mics.mean(0)
        rows.append({"array": array, "source": source, "reference_deg": reference,
                     "onset_fits_deg": {str(level): onset_fit(responses, fs, mics, level, reference) for level in ONSET_LEVELS},
                     "band_steered_deg": {f"{lo}-{hi} Hz": band_steered(responses, fs, mics, (lo, hi), reference) for lo, hi in BANDS_HZ}})
    print(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
