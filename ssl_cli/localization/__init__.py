"""Source localization: one module per method (:mod:`.srp`, :mod:`.multilat`, :mod:`.wav2pos`),
the lag-distribution fit (:mod:`.lagfit`), the result type and its file (:mod:`.track`), the search
region (:mod:`.region`), the method registry with :func:`locate` (:mod:`.methods`), and the job on
files (:mod:`.job`).

Names are imported on first use, so that importing one module does not import torch.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "locate": "methods", "LOCATE_METHODS": "methods", "locate_method": "methods", "select_mics": "methods",
    "PositionTrack": "track", "read_positions": "track", "write_positions": "track",
    "default_bounds": "region", "search_bounds": "region", "locate_files": "job",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'sslkit.localization' has no attribute '{name}'")
    return getattr(importlib.import_module(f"sslkit.localization.{_HOMES[name]}"), name)
