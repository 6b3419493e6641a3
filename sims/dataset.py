"""Random datasets: many scenes drawn from one template, simulated on all CPU cores, resumable."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sslkit.errors import ConfigError
from sslkit.files import write_csv
from sslkit.recording import SCENE_FILE, Recording, save_recording
from sslkit.sims.room import simulate
from sslkit.sims.scene import Scene, resolve_scene

INDEX_FILE = "index.csv"
INDEX_COLUMNS = ["scene", "folder", "room_x", "room_y", "room_z", "rt60", "snr_db", "n_mics", "n_sources", "duration"]
MAX_REDRAWS = 50
"""Attempts to redraw a scene whose random RT60 the random room cannot reach."""


def scene_folder(out: Path, index: int) -> Path:
    return out / f"scene_{index:05d}"


def draw_feasible_scene(template: dict, seed: int, index: int, audio_dir: str | None) -> Scene:
    """Resolve scene ``index``; redraw (with a derived index) while inverse Sabine rejects it."""
    from sslkit.sims.room import make_room

    for attempt in range(MAX_REDRAWS):
        scene = resolve_scene(template, seed, index + attempt * 1_000_003, audio_dir)
        try:
            make_room(scene.room, scene.fs, scene.c)
            return scene
        except ConfigError:
            continue
    raise ConfigError(f"scene {index}: no feasible room after {MAX_REDRAWS} draws (check rt60 and dimensions ranges)")


def parallel_map(fn: Callable, jobs: list[tuple], workers: int | None) -> Iterator:
    """``fn(*job)`` for every job, in order, on ``workers`` processes (all cores by default; 1 runs inline)."""
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        yield from (fn(*job) for job in jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(fn, *zip(*jobs), chunksize=4) if jobs else ()


def _simulate_in_memory(template: dict, seed: int, index: int, audio_dir: str | None) -> Recording:
    return simulate(draw_feasible_scene(template, seed, index, audio_dir))[0]


def simulate_many(
    template: dict, indices: list[int], seed: int = 0, workers: int | None = None, audio_dir: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[Recording]:
    """Simulate the scenes ``indices`` of ``template`` in memory on ``workers`` processes, in order."""
    return list(simulate_stream(template, indices, seed, workers, audio_dir, on_progress))


def simulate_stream(
    template: dict, indices: list[int], seed: int = 0, workers: int | None = None, audio_dir: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Recording]:
    """``simulate_many`` one recording at a time, for callers that keep only a part of each."""
    for done, rec in enumerate(parallel_map(_simulate_in_memory, [(template, seed, i, audio_dir) for i in indices], workers), 1):
        yield rec
        if on_progress:
            on_progress(done)


def simulate_one(template: dict, seed: int, index: int, out: str, audio_dir: str | None, save_rirs: bool) -> dict:
    """Simulate and write scene ``index`` (worker entry point); returns its index row."""
    scene = draw_feasible_scene(template, seed, index, audio_dir)
    rec, rirs = simulate(scene, save_rirs)
    folder = scene_folder(Path(out), index)
    save_recording(folder, rec, {"rirs.npz": rirs} if save_rirs else None)
    return index_row(index, folder.name, scene)


def index_row(index: int, folder: str, scene: Scene) -> dict:
    return {
        "scene": index, "folder": folder, "room_x": scene.room.dimensions[0], "room_y": scene.room.dimensions[1],
        "room_z": scene.room.dimensions[2], "rt60": scene.room.rt60, "snr_db": scene.snr_db,
        "n_mics": len(scene.mic_ids), "n_sources": len(scene.sources), "duration": scene.duration,
    }


def simulate_dataset(
    template: dict,
    count: int,
    out: str | Path,
    seed: int = 0,
    workers: int | None = None,
    audio_dir: str | None = None,
    save_rirs: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Simulate ``count`` scenes into ``out/scene_NNNNN`` and write ``out/index.csv``.

    Scenes whose folder already holds a ``scene.yaml`` are kept (folders are written atomically,
    so a present one is complete): re-running after an interruption resumes. ``on_progress`` is
    called with the number of scenes finished so far.
    """
    import yaml

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[int, dict] = {}
    todo = []
    for i in range(count):
        done = scene_folder(out, i) / SCENE_FILE
        if done.is_file():
            rows[i] = index_row(i, done.parent.name, resolve_scene(yaml.safe_load(done.read_text())))
        else:
            todo.append(i)
    if on_progress:
        on_progress(len(rows))
    jobs = [(template, seed, i, str(out), audio_dir, save_rirs) for i in todo]
    for row in parallel_map(simulate_one, jobs, workers):
        rows[row["scene"]] = row
        if on_progress:
            on_progress(len(rows))
    write_csv(out / INDEX_FILE, INDEX_COLUMNS, ([rows[i][c] for c in INDEX_COLUMNS] for i in sorted(rows)))
    return out / INDEX_FILE
