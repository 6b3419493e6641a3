"""sslkit: sound source localization on ad-hoc microphone arrays.

The library does everything the ``sslkit`` command does::

    import sslkit

    rec = sslkit.load_recording("examples/luvira-demo")  # room mics; rec.source_signal = near-source channel
    track = sslkit.locate(rec, "srp-phat", window=0.5)    # PositionTrack: times (F,) s, xyz (F, 3) m, confidence (F,)
    sslkit.evaluate_positions(track, rec.sources)         # {"mae_m": ..., "accuracy": ..., ...}

Names are imported on first use, so ``import sslkit`` (and ``sslkit --help``) stays fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sslkit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

_HOMES = {
    # recordings
    "load_recording": "sslkit.recording", "read_recording": "sslkit.recording", "save_recording": "sslkit.recording",
    "Recording": "sslkit.recording", "SourceTrack": "sslkit.recording", "read_sources": "sslkit.recording",
    # simulation
    "simulate": "sslkit.sims.simulate", "simulate_dataset": "sslkit.sims.dataset", "list_presets": "sslkit.sims.scene",
    # TDOA
    "estimate_tdoa": "sslkit.tdoa", "TDOA_METHODS": "sslkit.tdoa", "TdoaResult": "sslkit.tdoa",
    "write_tdoa_csv": "sslkit.tdoa", "read_tdoa_csv": "sslkit.tdoa", "true_tdoa": "sslkit.tdoa",
    # localization
    "locate": "sslkit.localization.methods", "LOCATE_METHODS": "sslkit.localization.methods", "PositionTrack": "sslkit.localization.track",
    "read_positions": "sslkit.localization.track", "write_positions": "sslkit.localization.track", "locate_files": "sslkit.localization.job",
    # evaluation
    "evaluate_positions": "sslkit.evaluation", "evaluate_track": "sslkit.evaluation", "evaluate_files": "sslkit.evaluation",
    "matched_errors": "sslkit.evaluation",
    # models
    "load_model": "sslkit.models.checkpoint", "shipped_index": "sslkit.models.checkpoint",
    # physics and defaults
    "SPEED_OF_SOUND": "sslkit.geometry", "range_differences": "sslkit.geometry",
    "DEFAULT_METHOD": "sslkit.options", "DEFAULT_WINDOW_S": "sslkit.options", "MAX_SOURCES": "sslkit.options",
    # errors
    "UserError": "sslkit.errors", "SslkitWarning": "sslkit.errors",
    # process set-up (the CLI does it)
    "keep_freed_memory": "sslkit.allocator",
}
__all__ = ["__version__", *sorted(_HOMES)]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'sslkit' has no attribute '{name}'")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return __all__
