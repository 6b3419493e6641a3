"""Peak memory and time of ``sslkit.locate`` against the length of the recording: does memory stay
flat as recordings grow?

The recordings repeat the bundled demo (11 mics, 4 s, 16 kHz) end to end, from 1 to ``--minutes``
minutes. Each method runs in a fresh process (its peak resident memory is its own, the audio
included), timed after its imports, with the allocator set as the CLI sets it.

    python benchmarks/long_recordings.py > benchmarks/results/long_recordings_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from real_arrays import in_fresh_process

from sslkit.resources import machine_description

DEMO = Path(__file__).resolve().parents[1] / "examples" / "luvira-demo"
METHODS = ("multilat", "srp-phat", "music", "wav2pos")


def repeated_demo(minutes: float, folder: Path) -> Path:
    """A recording folder holding the demo's audio repeated for ``minutes`` (its other files as they are)."""
    folder.mkdir()
    audio, fs = sf.read(DEMO / "audio.wav", dtype="float32")
    sf.write(folder / "audio.wav", np.tile(audio, (int(np.ceil(minutes * 60 * fs / len(audio))), 1)), fs, subtype="FLOAT")
    for name in ("mics.csv", "scene.yaml"):
        (folder / name).write_bytes((DEMO / name).read_bytes())
    return folder


def run(folder: str, method: str, queue) -> None:
    import torch  # noqa: F401  (outside the clock, as for every method)

    import sslkit

    sslkit.keep_freed_memory()
    rec = sslkit.load_recording(folder)
    start = time.perf_counter()
    sslkit.locate(rec, method)
    queue.put({"seconds": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,5", help="recording lengths, comma-separated")
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (float(m) for m in args.minutes.split(",")):
            folder = repeated_demo(minutes, Path(tmp) / f"{minutes:g}min")
            audio_mb = (folder / "audio.wav").stat().st_size / 2**20
            for method in args.methods.split(","):
                rows.append({"minutes": minutes, "method": method, "audio_mb": audio_mb, **in_fresh_process(run, str(folder), method)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"machine": machine_description(), "load_average": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
