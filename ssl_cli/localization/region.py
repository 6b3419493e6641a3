"""The region the localization methods search: the room of scene.yaml, the mics' box grown by a
margin, or the caller's bounds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sslkit.errors import UserError
from sslkit.geometry import FAR_FIELD_RATIO, aperture, check_metres, in_far_field

BOUNDS_MARGIN_M = 1.0
"""Without a room in scene.yaml, the search box is the mics' box grown by this much (z ≥ 0)."""


def scene_room(rec) -> list[float] | None:
    """The room's dimensions (m) from the recording's scene.yaml, or None."""
    return rec.scene.get("room", {}).get("dimensions") if rec.scene else None


def default_bounds(rec) -> np.ndarray:
    """Search box (2, 3): the room of scene.yaml when known, else the mics' box grown by 1 m (z ≥ 0)."""
    room = scene_room(rec)
    if room:
        return np.array([[0.0, 0.0, 0.0], room])
    lo, hi = rec.mics.min(axis=0) - BOUNDS_MARGIN_M, rec.mics.max(axis=0) + BOUNDS_MARGIN_M
    lo[2] = max(lo[2], 0.0)
    return np.stack([lo, hi])


def search_bounds(rec, bounds: np.ndarray | Sequence | None) -> np.ndarray:
    """The search box (2, 3) ``bounds`` (checked: min < max on every axis, metres), or :func:`default_bounds` when None."""
    if bounds is None:
        return default_bounds(rec)
    box = np.asarray(bounds, dtype=float)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or np.any(box[0] >= box[1]):
        raise UserError(f"bounds = {np.asarray(bounds).tolist()}: a search box is [[xmin, ymin, zmin], [xmax, ymax, zmax]] "
                        "in metres with min < max")
    check_metres(box, "bounds")
    return box


def plane_height(mics: np.ndarray, bounds: np.ndarray, height: float | None) -> float:
    """The height (m) of the plane that 2-D localization searches: ``height``, or the mean mic
    height when None; UserError when it lies outside the search box's z range."""
    z = float(mics[:, 2].mean()) if height is None else float(height)
    if not (np.isfinite(z) and bounds[0, 2] <= z <= bounds[1, 2]):
        raise UserError(f"height = {z:g} m lies outside the search region's z range [{bounds[0, 2]:g}, {bounds[1, 2]:g}] m "
                        "(the room of scene.yaml, or bounds)")
    return z


def range_warning(mics: np.ndarray, bounds: np.ndarray) -> str | None:
    """A note suggesting far_field when the search region is ``FAR_FIELD_RATIO`` times wider than the array."""
    size, region = aperture(mics), float(np.linalg.norm(bounds[1] - bounds[0]))
    if region > FAR_FIELD_RATIO * size:
        return (f"the array ({size:.2f} m across) is small next to the search region ({region:.1f} m across): "
                "range is poorly determined there; directions are not (--far-field)")
    return None


def near_field_warning(rec, bounds: np.ndarray | Sequence | None = None) -> str | None:
    """A note for far-field methods when no point of the known search region (``bounds``, else the
    room of scene.yaml) lies ``FAR_FIELD_RATIO`` apertures from the array's centroid: sources there
    are in the array's near field, where plane waves misjudge their directions. None without a
    known region (the mics' grown box is only a guess)."""
    if bounds is None and not scene_room(rec):
        return None
    box = search_bounds(rec, bounds)
    corners = np.stack(np.meshgrid(*box.T, indexing="ij"), axis=-1).reshape(-1, 3)
    if not in_far_field(corners, rec.mics).any():
        reach, size = float(np.linalg.norm(corners - rec.mics.mean(axis=0), axis=1).max()), aperture(rec.mics)
        return (f"the search region lies within {reach:.1f} m of the array's centre, but the far field begins "
                f"{FAR_FIELD_RATIO:g} array sizes away ({FAR_FIELD_RATIO * size:.1f} m): sources there are in the array's near field, "
                "where directions from plane waves are biased; positions fit them (srp-phat or multilat without --far-field)")
    return None
