"""sslkit on measured arrays (``../shared/real``): the 110- and 86-point spherical arrays (directions)
and the 32-mic linear array (positions in its plane, x ≥ 0), with pyroomacoustics' DOA methods
side by side on the spheres.

Each case is a recording made by ``../shared/real/make_recording.py`` from the bundled *test*
voices (3 s, 16 kHz, 30 dB SNR): every single loudspeaker of each set, the four loudspeakers of
the 110-point sphere at once (pyroomacoustics' methods on it and on loudspeaker 2 alone), and
pairs of loudspeakers on the linear array. Each method runs in a
fresh process, so its peak memory is its own. Errors: median angle (degrees) to the fitted
directions of shared/real's README (spheres), median distance (m) to the fitted positions (linear
array); several sources are matched to the truth hop by hop (Hungarian).

    python benchmarks/real_arrays.py > benchmarks/results/real_arrays_cpu.json
    python benchmarks/real_arrays.py --tables                 # markdown tables of the last run
    python benchmarks/real_arrays.py --case sofia-sphere/a3-rigid-r0.0875-110ch:2 --methods "srp-phat --far-field,pyroomacoustics SRP" \
        --pyroomacoustics-methods SRP                         # one case, two methods
    python benchmarks/real_arrays.py --case sofia-sphere/a3-rigid-r0.0875-110ch:1,2,3,4 --pyroomacoustics-methods MUSIC,NormMUSIC \
        --methods "srp-phat --far-field --static,music --static,normmusic --static,pyroomacoustics MUSIC,pyroomacoustics NormMUSIC"

Skips (prints a note and an empty result) when ../shared/real is absent.
"""

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sslkit.resources import machine_description

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
RESULTS = Path(__file__).parent / "results" / "real_arrays_cpu.json"
VOICES = sorted((Path(__file__).resolve().parents[1] / "sims" / "signals" / "test").glob("*.flac"))
SPHERE_110 = "sofia-sphere/a3-rigid-r0.0875-110ch"
SPHERE_86 = "sofia-sphere/a4-open-r0.25-86ch"
ULA = "ula32-office"
FITTED_DIRECTIONS = {  # shared/real/README.md: plane-wave fits to the measured onsets (azimuth, elevation)
    (SPHERE_110, "1"): (45.6, 0.6), (SPHERE_110, "2"): (16.2, 0.8), (SPHERE_110, "3"): (346.0, 1.0), (SPHERE_110, "4"): (316.1, 1.3),
    (SPHERE_86, "1"): (180.4, 3.7),
}
ULA_BOUNDS = [[0.0, -0.5, -1.0], [2.0, 1.5, 1.0]]
SSLKIT_FAR = {"srp-phat --far-field": ("srp-phat", {"far_field": True}), "srp-phat --far-field --static": ("srp-phat", {"far_field": True, "static": True}),
              "music": ("music", {}), "normmusic": ("normmusic", {}),
              "music --static": ("music", {"static": True}), "normmusic --static": ("normmusic", {"static": True})}
"""--static gives one direction per source for the recording, as pyroomacoustics' methods do."""
PRA_METHODS = ("SRP", "MUSIC", "NormMUSIC", "TOPS")
PRA_CASES = ((SPHERE_110, "2"), (SPHERE_110, "1,2,3,4"))
"""The cases pyroomacoustics' methods run on too (each takes minutes on 110 channels)."""
ULA_METHODS = ("srp-phat", "multilat")
"""sslkit's methods on the linear array, positions in its plane on the x ≥ 0 side."""
PRA_GRID_DEG = 2.0
"""pyroomacoustics' grid: azimuth and colatitude every 2° (its methods evaluate every grid point)."""


def make_recording(array: str, sources: str, out: Path, seed: int) -> Path:
    signals = ",".join(str(VOICES[(int(s) + seed) % len(VOICES)]) for s in sources.split(","))
    subprocess.run([sys.executable, str(REAL / "make_recording.py"), array, "--sources", sources, "--signals", signals, "--fitted",
                    "--duration", "3", "--seed", str(seed), "--out", str(out)], check=True, capture_output=True)
    return out


def run_sslkit(folder: str, method: str, options: dict, n_sources: int, queue) -> None:
    """``sslkit.locate`` timed after its imports (as pyroomacoustics' are), with the allocator set as the CLI sets it."""
    import torch  # noqa: F401  (sslkit imports it lazily: outside the clock)

    import sslkit

    sslkit.keep_freed_memory()
    rec = sslkit.load_recording(folder)
    start = time.perf_counter()
    track = sslkit.locate(rec, method, sources=n_sources, **options)
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "times": track.times.tolist(), "xyz": track.xyz.tolist(), "azimuth": track.azimuth.tolist(), "elevation": track.elevation.tolist()})


def run_pyroomacoustics(folder: str, method: str, n_sources: int, queue) -> None:
    """One direction (or n) per recording by pyroomacoustics.doa on its STFT (nfft 512), 300–4000 Hz."""
    import pyroomacoustics as pra

    import sslkit

    rec = sslkit.load_recording(folder)
    mics = (rec.mics - rec.mics.mean(0)).T
    nfft = 512
    start = time.perf_counter()
    stft = np.array([pra.transform.stft.analysis(rec.audio[:, m], nfft, nfft // 2).T for m in range(rec.n_mics)])  # (M, F, S)
    azimuth = np.radians(np.arange(0, 360, PRA_GRID_DEG))
    colatitude = np.radians(np.arange(0, 180 + PRA_GRID_DEG / 2, PRA_GRID_DEG))
    doa = pra.doa.algorithms[method](mics, rec.fs, nfft, c=343.0, num_src=n_sources, dim=3, azimuth=azimuth, colatitude=colatitude)
    doa.locate_sources(stft, freq_range=[300.0, 4000.0])
    seconds = time.perf_counter() - start
    az, el = np.degrees(doa.azimuth_recon), 90 - np.degrees(doa.colatitude_recon)
    queue.put({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "times": [rec.duration / 2] * len(az), "xyz": [[np.nan] * 3] * len(az), "azimuth": az.tolist(), "elevation": el.tolist()})


def in_fresh_process(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Exception:  # queue.Empty: still working, unless it died
            if not process.is_alive():
                raise RuntimeError(f"{target.__name__}{args[1:]} failed (exit code {process.exitcode})") from None
    process.join()
    return result


def direction_errors(result: dict, truth_deg: list[tuple[float, float]]) -> list[float]:
    """Per hop, the estimates matched to the true directions (Hungarian on angle): all the angles."""
    from scipy.optimize import linear_sum_assignment

    from sslkit.localization.directions import angle_between, unit_vector

    times = np.array(result["times"])
    estimates = unit_vector(np.array(result["azimuth"]), np.array(result["elevation"]))
    truth = unit_vector(*np.array(truth_deg).T)
    errors = []
    for t in np.unique(times):
        found = estimates[times == t]
        found = found[np.isfinite(found).all(1)]
        angles = angle_between(truth[:, None], found[None]) if len(found) else np.full((len(truth), 1), 180.0)
        rows, cols = linear_sum_assignment(angles)
        errors += angles[rows, cols].tolist() + [180.0] * (len(truth) - len(rows))
    return errors


def position_errors(result: dict, folder: Path) -> list[float]:
    import sslkit
    from sslkit.localization.track import PositionTrack

    truth = sslkit.read_sources(folder / "sources.csv")
    n = len(result["times"])
    track = PositionTrack(np.array(result["times"]), np.array(result["xyz"]), np.ones(n), np.zeros(n, int),
                          track=np.tile(np.arange(len(np.unique(truth.source_id))), n // len(np.unique(truth.source_id))))
    return sslkit.matched_errors(track, truth)[0].tolist()


def cases() -> list[tuple[str, str, str]]:
    """(kind, array, sources): directions on the spheres, positions on the linear array."""
    single = [("direction", SPHERE_110, s) for s in "1234"] + [("direction", SPHERE_86, "1")]
    return single + [("direction", SPHERE_110, "1,2,3,4")] + [("position", ULA, str(s)) for s in range(1, 10)] + \
        [("position", ULA, pair) for pair in ("1,9", "3,7", "2,6")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", action="store_true", help="print the markdown tables of the last run")
    parser.add_argument("--no-pyroomacoustics", action="store_true")
    parser.add_argument("--case", action="append", help="only ARRAY:SOURCES (repeatable), e.g. sofia-sphere/a3-rigid-r0.0875-110ch:2")
    parser.add_argument("--methods", help="only these methods (comma-separated names as in the results)")
    parser.add_argument("--pyroomacoustics-methods", default=",".join(PRA_METHODS))
    args = parser.parse_args()
    if args.tables:
        print_tables(json.loads(RESULTS.read_text()))
        return
    if not REAL.is_dir():
        print(json.dumps({"skipped": f"{REAL} is absent"}))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, array, sources in cases():
            if args.case and f"{array}:{sources}" not in args.case:
                continue
            folder = make_recording(array, sources, Path(tmp) / f"{array.replace('/', '-')}-{sources.replace(',', '-')}", seed=0)
            n = len(sources.split(","))
            methods = {name: (run_sslkit, str(folder), m, opts, n) for name, (m, opts) in SSLKIT_FAR.items()} if kind == "direction" else \
                {f"{m} --dims 2 --bounds (x ≥ 0)": (run_sslkit, str(folder), m, {"dims": 2, "height": 0.0, "bounds": ULA_BOUNDS}, n) for m in ULA_METHODS}
            if (array, sources) in PRA_CASES and not args.no_pyroomacoustics:
                methods.update({f"pyroomacoustics {m}": (run_pyroomacoustics, str(folder), m, n) for m in args.pyroomacoustics_methods.split(",")})
            if args.methods:
                methods = {name: call for name, call in methods.items() if name in args.methods.split(",")}
            for name, (target, *call) in methods.items():
                result = in_fresh_process(target, *call)
                if kind == "direction":
                    errors = direction_errors(result, [FITTED_DIRECTIONS[(array, s)] for s in sources.split(",")])
                    summary = {"median_deg": float(np.median(errors)), "within_5_deg": float(np.mean(np.array(errors) < 5))}
                else:
                    errors = position_errors(result, folder)
                    summary = {"median_m": float(np.median(errors)), "within_15_cm": float(np.mean(np.array(errors) < 0.15))}
                rows.append({"array": array, "sources": sources, "method": name, **summary,
                             "seconds": result["seconds"], "peak_mb": result["peak_mb"]})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"machine": machine_description(), "load_average": os.getloadavg(), "rows": rows}, indent=1))


def print_tables(results: dict) -> None:
    print(f"Machine: {results['machine']}, load average {results['load_average'][0]:.1f} at the end\n")
    print("| array | sources | method | median error | within 5° / 15 cm | seconds | peak MB |\n|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        error = f"{r['median_deg']:.1f}°" if "median_deg" in r else f"{r['median_m'] * 100:.1f} cm"
        share = r.get("within_5_deg", r.get("within_15_cm"))
        print(f"| {r['array'].split('/')[-1]} | {r['sources']} | {r['method']} | {error} | {share * 100:.0f} % | {r['seconds']:.1f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
