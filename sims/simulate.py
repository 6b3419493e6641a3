"""``simulate``: a preset or scene YAML (or a template dict) to a recording, in memory or as a folder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from sslkit.errors import SslkitWarning
from sslkit.recording import Recording, save_recording
from sslkit.sims.room import simulate as simulate_scene
from sslkit.sims.scene import Scene, errors_naming, load_template, resolve_scene
from sslkit.sims.signals import drawn_from


def scene_template(scene: str | os.PathLike | dict, duration: float | None = None) -> dict:
    """The template of a preset name, a scene/dataset YAML or a template dict, with ``duration`` (s) overridden when given."""
    template = dict(scene) if isinstance(scene, dict) else load_template(scene)
    if duration is not None:
        template["duration"] = duration
    return template


def simulate(scene: str | os.PathLike | dict, out: str | os.PathLike | None = None, *, seed: int = 0, duration: float | None = None,
             audio_dir: str | os.PathLike | None = None, save_rirs: bool = False, overwrite: bool = False) -> tuple[Recording, Scene]:
    """Simulate one recording of ``scene`` (a preset name, a scene/dataset YAML or a template dict)
    with the random choices of ``seed``; written to the folder ``out`` when given (``overwrite``
    replaces an earlier sslkit output there). Returns the recording and the resolved scene.
    A ``scene.yaml`` written by sslkit re-simulates its recording bit for bit."""
    from sslkit.files import check_new_folder

    source = scene if not isinstance(scene, dict) else "the scene"
    inputs = [Path(p) for p in (scene, audio_dir) if isinstance(p, (str, os.PathLike)) and Path(p).exists()]
    if out is not None:
        check_new_folder(Path(out), overwrite, inputs)
    with errors_naming(source):
        resolved = resolve_scene(scene_template(scene, duration), seed, audio_dir=str(audio_dir) if audio_dir else None)
        if audio_dir is not None and not any(drawn_from(src.signal, audio_dir) for src in resolved.sources):
            played = ", ".join(src.signal.split(":")[0] for src in resolved.sources)
            warnings.warn(SslkitWarning(f"{audio_dir}: no source of this scene takes its signal from --audio-dir (they play {played}; "
                                        "only 'speech' and class names drawn by a template come from it)"), stacklevel=2)
        rec, rirs = simulate_scene(resolved, save_rirs)
    if out is not None:
        save_recording(Path(out), rec, {"rirs.npz": rirs} if save_rirs else None, overwrite)
    return rec, resolved
