"""Random datasets: many scenes drawn from one template, simulated on all CPU cores, resumable."""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from sslkit.errors import ConfigError, GeometryError, Interrupted, OutputError, SslkitWarning, UserError
from sslkit.files import (
    check_folder_to_fill,
    check_only_ours,
    first_difference,
    plain,
    read_yaml,
    remove_sslkit_folder,
    remove_temporaries,
    write_csv,
    write_yaml,
)
from sslkit.recording import SCENE_FILE, Recording, save_recording
from sslkit.resources import check_disk, format_bytes
from sslkit.sims.room import simulate
from sslkit.sims.scene import Scene, resolve_scene

INDEX_FILE = "index.csv"
DATASET_FILE = "dataset.yaml"
INDEX_COLUMNS = ["scene", "folder", "room_x", "room_y", "room_z", "rt60", "snr_db", "n_mics", "n_sources", "duration"]
MAX_REDRAWS = 50
"""Attempts to redraw a scene whose random RT60 the random room cannot reach or whose source leaves the room."""
CLUSTER_TIMEOUT_S = 30
"""Seconds to wait for a Dask scheduler to answer."""


def scene_folder(out: Path, index: int) -> Path:
    return out / f"scene_{index:05d}"


def draw_feasible_scene(template: dict, seed: int, index: int, audio_dir: str | None) -> Scene:
    """Resolve scene ``index``; redraw (with a derived index) while inverse Sabine rejects its room or
    a source's path leaves the room (:func:`~sslkit.sims.room.check_placement`)."""
    from sslkit.sims.room import check_placement, check_scene_size, make_room

    for attempt in range(MAX_REDRAWS):
        scene = resolve_scene(template, seed, index + attempt * 1_000_003, audio_dir)
        try:
            make_room(scene.room, scene.fs, scene.c)
            check_scene_size(scene)  # a scene too large for memory stops here, before its path is traced
            check_placement(scene)
            return scene
        except (ConfigError, GeometryError) as err:
            last = err
    raise ConfigError(f"scene {index}: no feasible scene after {MAX_REDRAWS} draws (check the template's ranges); the last: {last}")


def parallel_map(fn: Callable, jobs: list[tuple], workers: int | None, ordered: bool = True) -> Iterator:
    """``fn(*job)`` for every job on ``workers`` processes (all cores by default; 1 runs inline), in
    order, or as each finishes (``ordered=False``).

    Workers ignore Ctrl-C; the caller's KeyboardInterrupt terminates them at once. More workers than
    cores are not started (each holds its own copy of the libraries and a room's RIRs): a warning says so."""
    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        warnings.warn(SslkitWarning(f"workers = {workers}: this machine has {cores} core{'s' * (cores != 1)}, so {cores} process{'es' * (cores != 1)} run "
                                    "(a Dask cluster, simulate --scheduler, scales further)"), stacklevel=2)
    workers = min(workers or cores, cores, max(1, len(jobs)))
    if workers == 1:
        yield from (fn(*job) for job in jobs)
        return
    with multiprocessing.Pool(workers, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
        call = functools.partial(_call, fn)
        yield from pool.imap(call, jobs, chunksize=4) if ordered else pool.imap_unordered(call, jobs)


def _call(fn: Callable, job: tuple):
    return fn(*job)


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


def simulate_scene(template: dict, seed: int, index: int, audio_dir: str | None, save_rirs: bool) -> tuple[int, Scene, Recording, dict]:
    """Scene ``index`` simulated in memory: its index, resolved scene, recording and RIRs (a cluster worker's job)."""
    scene = draw_feasible_scene(template, seed, index, audio_dir)
    rec, rirs = simulate(scene, save_rirs)
    return index, scene, rec, rirs


def write_scene(out: Path, index: int, scene: Scene, rec: Recording, rirs: dict, save_rirs: bool) -> dict:
    """Write a simulated scene's folder; returns its index row."""
    folder = scene_folder(out, index)
    save_recording(folder, rec, {"rirs.npz": rirs} if save_rirs else None)
    return index_row(index, folder.name, scene)


def simulate_one(template: dict, seed: int, index: int, out: str, audio_dir: str | None, save_rirs: bool) -> dict:
    """Simulate and write scene ``index`` (a local worker's job); returns its index row."""
    return write_scene(Path(out), *simulate_scene(template, seed, index, audio_dir, save_rirs), save_rirs)


@contextlib.contextmanager
def dask_client(scheduler: str, workers: int | None = None) -> Iterator[object]:
    """A dask.distributed client of the cluster at ``scheduler`` (its address, or ``local`` for a
    local cluster of ``workers`` single-threaded worker processes, default one per core), closed on
    exit; ConfigError when dask.distributed is missing or no scheduler answers."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--scheduler needs dask.distributed: pip install 'sslkit[cluster]'") from None
    logging.getLogger("distributed").setLevel(logging.ERROR)  # the cluster's own progress notes are not the user's
    local = scheduler == "local"
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=None) if local else None
    try:
        client = Client(cluster if cluster is not None else scheduler, timeout=CLUSTER_TIMEOUT_S)
    except OSError as err:
        raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there ({err})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def cluster_rows(client, template: dict, seed: int, indices: list[int], out: Path, audio_dir: str | None, save_rirs: bool) -> Iterator[dict]:
    """Scenes simulated on the Dask cluster of ``client`` and written here as they finish; their
    index rows, in the order they finish. The workers need neither ``out`` nor a shared file system."""
    from distributed import as_completed

    futures = client.map(simulate_scene, [template] * len(indices), [seed] * len(indices), indices, [audio_dir] * len(indices),
                         [save_rirs] * len(indices), pure=False)
    for future in as_completed(futures):
        yield write_scene(out, *future.result(), save_rirs)


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
    overwrite: bool = False,
    scheduler: str | None = None,
) -> Path:
    """Simulate ``count`` scenes into ``out/scene_NNNNN`` and write ``out/index.csv``, on
    ``workers`` local processes or, with ``scheduler``, on a Dask cluster (:func:`cluster_rows`;
    ``local``: ``workers`` processes of a local one); the files are the same either way.

    Scenes whose folder already holds a ``scene.yaml`` are kept (folders are written atomically,
    so a present one is complete): re-running after an interruption resumes, provided the
    template, seed and audio folder are those of ``out/dataset.yaml`` (see :func:`check_dataset_folder`).
    ``on_progress`` is called with the number of scenes finished so far. On Ctrl-C the workers
    stop at once and :class:`~sslkit.errors.Interrupted` says how many scenes were kept.
    """
    out = Path(out)
    if scheduler not in (None, "local") and workers is not None:
        raise UserError(f"workers = {workers}: the cluster at {scheduler} runs the scenes on its own workers")
    present = check_dataset_folder(out, template, seed, audio_dir, count, overwrite)
    per_scene = dataset_bytes(template, seed, audio_dir)
    check_disk(per_scene * (count - present), out, f"{count - present} scenes to simulate, about {format_bytes(per_scene)} each",
               "simulate fewer (--count) or choose another --out")
    with dask_client(scheduler, workers) if scheduler is not None else contextlib.nullcontext() as client:  # connected before anything is written
        return simulate_scenes(template, count, out, seed, workers, audio_dir, save_rirs, on_progress, overwrite, client)


def simulate_scenes(template: dict, count: int, out: Path, seed: int, workers: int | None, audio_dir: str | None, save_rirs: bool,
                    on_progress: Callable[[int], None] | None, overwrite: bool, client) -> Path:
    """:func:`simulate_dataset` once ``out`` is checked: locally, or on the cluster of a Dask ``client``."""
    if overwrite and (out / DATASET_FILE).is_file():
        remove_sslkit_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / DATASET_FILE).is_file():
        write_yaml(out / DATASET_FILE, dataset_record(template, seed, audio_dir))
    rows = {i: present_row(out, i) for i in present_scenes(out, count)}
    if on_progress:
        on_progress(len(rows))
    missing = [i for i in range(count) if i not in rows]
    if client is not None:
        finished = cluster_rows(client, template, seed, missing, out, audio_dir, save_rirs)
    else:
        finished = parallel_map(simulate_one, [(template, seed, i, str(out), audio_dir, save_rirs) for i in missing], workers, ordered=False)
    try:
        for row in finished:
            rows[row["scene"]] = row
            if on_progress:
                on_progress(len(rows))
    except BaseException as err:  # the workers were terminated: clear their half-written folders
        remove_temporaries(out, "scene_")
        rows.update({i: present_row(out, i) for i in present_scenes(out, count) if i not in rows})  # finished as we stopped
        if isinstance(err, KeyboardInterrupt):
            raise Interrupted(f"{len(rows)} of {count} scenes kept in {out}; run the same command again to resume") from None
        raise
    finally:
        write_csv(out / INDEX_FILE, INDEX_COLUMNS, ([rows[i][c] for c in INDEX_COLUMNS] for i in sorted(rows)))
    return out / INDEX_FILE


def present_row(out: Path, index: int) -> dict:
    """The index row of a scene already on disk."""
    folder = scene_folder(out, index)
    return index_row(index, folder.name, resolve_scene(read_yaml(folder / SCENE_FILE)))


def dataset_record(template: dict, seed: int, audio_dir: str | None) -> dict:
    """What makes a dataset's scenes what they are; kept in ``dataset.yaml`` to check resumes."""
    return plain({"seed": seed, "audio_dir": None if audio_dir is None else str(audio_dir), "template": template})


def present_scenes(out: Path, count: int) -> list[int]:
    """Indices below ``count`` whose scene folder is complete (sorted; found among the folder's entries,
    so that a large ``count`` costs nothing)."""
    if not out.is_dir():
        return []
    names = (entry.name.removeprefix("scene_") for entry in os.scandir(out) if entry.name.startswith("scene_"))
    indices = sorted(int(name) for name in names if name.isdigit() and int(name) < count)
    return [i for i in indices if (scene_folder(out, i) / SCENE_FILE).is_file()]


def dataset_bytes(template: dict, seed: int, audio_dir: str | None, sample: int = 4) -> float:
    """Bytes of audio one scene of ``template`` writes, on average over its first ``sample`` scenes
    (float32 samples: channels × duration × rate; RIRs, when saved, come on top)."""
    scenes = [resolve_scene(template, seed, i, audio_dir) for i in range(sample)]
    return sum(4 * s.fs * s.duration * (len(s.mics) + (s.near_source is not None)) for s in scenes) / sample


def check_dataset_folder(out: Path, template: dict, seed: int, audio_dir: str | None, count: int, overwrite: bool = False) -> int:
    """Check before work that ``out`` is new, empty, or this same dataset (then resumable).

    Returns the number of the ``count`` scenes already present (0 with ``overwrite``, which
    replaces an sslkit dataset). A dataset made from another template, seed or audio folder is an
    error naming the difference.
    """
    check_folder_to_fill(out)
    if not out.is_dir() or not any(out.iterdir()):
        return 0
    check_only_ours(out)
    if not (out / DATASET_FILE).is_file():
        raise OutputError(f"{out}: has no {DATASET_FILE}; it is not an sslkit dataset, choose another --out (nothing was changed)")
    if overwrite:
        return 0
    difference = first_difference(read_yaml(out / DATASET_FILE), dataset_record(template, seed, audio_dir))
    if difference:
        raise OutputError(f"{out}: an sslkit dataset made with {difference.removeprefix('template.')}; resume it with the same options, "
                          "or choose another --out (--overwrite replaces it)")
    return len(present_scenes(out, count))
