"""Near-field SRP-PHAT and multilateration on ad-hoc arrays of many mics: time, peak memory and
median error, each run in a fresh process (its peak memory is its own).

M mics drawn uniformly in the 7 × 8 × 2 m LuViRA room, one static white-noise talker at
(3.1, 4.2, 1.2) m heard in the free field with 1 % noise, 2 s at 16 kHz; ``sslkit.locate`` with
the default options (the room as the search region) and the integration windows given. A check
of memory and scale, not of reverberation (benchmarks/reverb_sweep.py). Prints JSON.

    python benchmarks/many_mics.py [--mics 11,32,64,110] [--windows 0.5,0] > benchmarks/results/many_mics_cpu.json
"""

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time

import numpy as np

from sslkit.resources import machine_description

SOURCE = np.array([3.1, 4.2, 1.2])
ROOM = [7.0, 8.0, 2.0]


def recording(n_mics: int, seconds: float = 2.0, fs: int = 16000, c: float = 343.0):
    """The free-field recording of ``n_mics`` random mics (exact fractional delays)."""
    from sslkit.recording import Recording, SourceTrack

    rng = np.random.default_rng(0)
    mics = rng.uniform([0, 0, 0], ROOM, (n_mics, 3))
    n = int(seconds * fs)
    spectrum, freqs = np.fft.rfft(rng.normal(size=n)), np.fft.rfftfreq(n, 1 / fs)
    delays = np.linalg.norm(mics - SOURCE, axis=1) / c
    audio = np.fft.irfft(spectrum[None] * np.exp(-2j * np.pi * freqs[None] * delays[:, None]), n).T
    audio += 0.01 * rng.normal(size=audio.shape)
    return Recording((audio / np.abs(audio).max()).astype(np.float32), fs, [str(i + 1) for i in range(n_mics)], mics,
                     SourceTrack(np.zeros(1), np.zeros(1, int), SOURCE[None]), {"c": c, "room": {"dimensions": ROOM}})


def run(n_mics: int, method: str, window: float, queue) -> None:
    """One located recording, timed after the imports and the synthesis, with its peak memory."""
    import sslkit

    sslkit.keep_freed_memory()  # as the CLI does
    rec = recording(n_mics)
    start = time.perf_counter()
    try:
        track = sslkit.locate(rec, method, window=window)
        error = float(np.nanmedian(np.linalg.norm(track.xyz - SOURCE, axis=1)))
        outcome = {"median_error_m": error, "located": float(np.mean(track.located))}
    except sslkit.errors.UserError as err:
        outcome = {"refused": str(err)}
    queue.put({"mics": n_mics, "pairs": n_mics * (n_mics - 1) // 2, "method": method, "window_s": window,
               "seconds": time.perf_counter() - start, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, **outcome})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mics", default="11,32,64,110")
    parser.add_argument("--windows", default="0.5,0")
    parser.add_argument("--methods", default="srp-phat,multilat")
    args = parser.parse_args()
    rows = []
    context = multiprocessing.get_context("spawn")
    for n_mics in map(int, args.mics.split(",")):
        for method in args.methods.split(","):
            for window in map(float, args.windows.split(",")):
                queue = context.Queue()
                process = context.Process(target=run, args=(n_mics, method, window, queue))
                process.start()
                rows.append(queue.get())
                process.join()
                print(json.dumps(rows[-1]), flush=True, file=sys.stderr)
    print(json.dumps({"machine": machine_description(), "load_average": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
