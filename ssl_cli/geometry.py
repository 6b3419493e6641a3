"""Physics and geometry in one place: the speed of sound, range differences and lags, and the
checks that geometry, units and sample rates make sense.

Sign convention (used everywhere in sslkit): for a source at s and mics rᵢ, rⱼ the range difference
is δᵢⱼ = ‖s − rᵢ‖ − ‖s − rⱼ‖ (metres) and the TDOA τᵢⱼ = tᵢ − tⱼ = δᵢⱼ / c (seconds): a positive
τᵢⱼ means the sound reaches mic i later than mic j.
"""

from __future__ import annotations

import math

import numpy as np

from sslkit.errors import GeometryError, InputFileError, UserError

SPEED_OF_SOUND = 343.0
"""Speed of sound in m/s where neither the caller nor the recording's scene.yaml gives one."""
SPEED_OF_SOUND_RANGE = (100.0, 2000.0)
"""Speeds of sound (m/s) accepted: gases to water; outside is a unit mistake (km/s, cm/s)."""
MAX_SPREAD_M = 100.0
"""Coordinates spread over more than this many metres are taken for millimetres or centimetres."""
FAR_FIELD_RATIO = 4.0
"""Distances (or search regions) this many times the array's aperture: range is poorly determined
there and directions are the answer (far field)."""
COPLANAR_RATIO = 1e-3
"""Mics whose smallest spread (singular value) is below this fraction of the largest are coplanar."""


def check_speed_of_sound(c: float) -> float:
    """``c`` in m/s within ``SPEED_OF_SOUND_RANGE`` (air: about 343), else UserError."""
    low, high = SPEED_OF_SOUND_RANGE
    if not low <= c <= high:
        raise UserError(f"the speed of sound must be {low:g} to {high:g} m/s (air: 343, water: 1480), got {c}")
    return c


def speed_of_sound(scene: dict | None, c: float | None = None) -> float:
    """``c`` when given, else the ``c`` of a recording's scene (scene.yaml), else ``SPEED_OF_SOUND``; checked."""
    if c is None:
        c = float((scene or {}).get("c", SPEED_OF_SOUND))
    return check_speed_of_sound(c)


def range_differences(points, mics, pairs):
    """δᵢⱼ = ‖s − rᵢ‖ − ‖s − rⱼ‖ (m) for points (..., 3), mics (M, 3) and pairs (P, 2) → (..., P).
    Works on numpy arrays and torch tensors alike."""
    diff = points[..., None, :] - mics
    dist = diff.norm(dim=-1) if hasattr(diff, "norm") else np.linalg.norm(diff, axis=-1)
    return dist[..., pairs[:, 0]] - dist[..., pairs[:, 1]]


def pair_lag_bounds(mics: np.ndarray, pairs: np.ndarray, fs: float, c: float) -> np.ndarray:
    """Largest possible |τᵢⱼ| per pair in samples, ‖rᵢ − rⱼ‖·fs / c, shape (P,)."""
    return np.linalg.norm(mics[pairs[:, 0]] - mics[pairs[:, 1]], axis=1) / c * fs


def lag_classes(bound_samples: float) -> int:
    """τmax of a lag classifier (classes −τmax…τmax whole samples) for delays up to ``bound_samples``:
    the bound rounded half up, which every rounded delay fits (23 for the 23.3 samples of a 0.5 m
    pair at 16 kHz, as Paper V's network has)."""
    return int(math.floor(bound_samples + 0.5))


def aperture(mics: np.ndarray) -> float:
    """The array's size (m): the diagonal of the mics' bounding box."""
    return float(np.linalg.norm(mics.max(axis=0) - mics.min(axis=0)))


def in_far_field(points: np.ndarray, mics: np.ndarray) -> np.ndarray:
    """Which points (N, 3) lie more than ``FAR_FIELD_RATIO`` apertures from the centroid of the mics (M, 3). (N,) bool."""
    return np.linalg.norm(points - mics.mean(axis=0), axis=1) > FAR_FIELD_RATIO * aperture(mics)


def check_sample_rate(fs: int, expected: int, where: object, what: str) -> None:
    """InputFileError naming ``where`` when a recording's rate ``fs`` is not the rate ``what`` (a checkpoint) expects."""
    if fs != expected:
        raise InputFileError(where, f"sample rate {fs} Hz, but {what} expects {expected} Hz")


def check_array_geometry(mics: np.ndarray, dims: int, bounds: np.ndarray | None = None, where: object | None = "mics",
                         far_field: bool = False) -> str | None:
    """Raise for too few mics, and for arrays that cannot tell apart the answers of the search:
    collinear mics in 3D (positions, or ``far_field`` directions, turned about their line), mics on
    a vertical line in a horizontal plane (``dims`` 2), and in that plane an answer and its mirror
    image (:func:`mirror_normal`) unless ``bounds`` (2, 3) cover one side of the mirror only.
    Return a warning when 3D answers are mirror-ambiguous (coplanar mics) and no bounds pick a side.
    Errors name ``where`` (the recording)."""
    where = "the recording" if where is None else where  # an in-memory recording has no path
    what = "a direction" if far_field else "a position"
    needed = 2 if far_field else dims + 1
    if len(mics) < needed:
        hint = "; with 3, localize in a plane (--dims 2 --height H)" if dims == 3 and len(mics) == 3 else ""
        raise GeometryError(f"{where}: {dims}D localization needs at least {needed} microphones, got {len(mics)}{hint}")
    span = array_span(mics)
    line = len(span) == 1
    if line and dims == 3:
        if far_field:
            raise GeometryError(f"{where}: the microphones are collinear: they hear only the angle between a direction and their line; "
                                "give directions in the horizontal plane (--dims 2) with --bounds on one side of the line")
        raise GeometryError(f"{where}: the microphones are collinear: positions around their line are ambiguous; localize in a "
                            "plane (--dims 2 --height H) with --bounds on one side of the array, or use --far-field --dims 2")
    if line and line_normal(span[0]) is None:
        heard = "no difference between horizontal directions" if far_field else "only the distance from it in a horizontal plane"
        raise GeometryError(f"{where}: the microphones lie on a vertical line: they hear {heard}")
    normal = mirror_normal(mics, dims)
    if normal is None or (bounds is not None and bounds_side(mics, bounds, normal) != 0):
        return None
    if dims == 2:
        shape = "collinear" if line else "in a vertical plane"
        raise GeometryError(f"{where}: the microphones are {shape}: {what} and its mirror image about their {'line' if line else 'plane'} "
                            "sound the same; give --bounds that cover one side of it only (e.g. x from 0 for an array along y)")
    if far_field:
        axis = int(np.abs(normal).argmax())
        return (f"the microphones are coplanar: a direction and its mirror image about their plane sound the same; directions are "
                f"given on the side toward +{'xyz'[axis]}; give --bounds on one side of the plane")
    in_plane = "" if mirror_normal(mics, 2) is not None else ", or --dims 2"  # a vertical plane's mirror stays in the horizontal plane
    return ("the microphones are coplanar: a position and its mirror image about their plane sound the same; "
            f"give --bounds on one side of the plane{in_plane}")


def principal_axes(mics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mics' spread about their centroid along each principal axis (3,) (the singular values,
    largest first) and those axes (3, 3), one per row; any number of mics."""
    centred = mics - mics.mean(axis=0)
    variance, axes = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(variance)[::-1]
    return np.sqrt(np.clip(variance[order], 0.0, None)), axes[:, order].T


def array_span(mics: np.ndarray) -> np.ndarray:
    """Orthonormal rows (k, 3) spanning the mics' positions about their centroid: k = 1 for
    collinear mics, 2 for coplanar ones, else 3 (a spread below ``COPLANAR_RATIO`` of the largest
    counts as none)."""
    spread, axes = principal_axes(mics)
    return axes[spread >= COPLANAR_RATIO * spread[0]]


def mirror_normal(mics: np.ndarray, dims: int) -> np.ndarray | None:
    """The unit normal (3,) of a mirror the array does not hear, oriented along its largest
    component: reflecting a position across the plane through the mics' centroid normal to it (a
    direction: across the plane through the origin) changes no distance to a mic, hence no TDOA,
    and in 2D keeps a position in the horizontal search plane. That is the plane of coplanar mics
    in 3D; in 2D, the vertical plane through collinear mics or of mics in a vertical plane. None
    when every mirror is heard."""
    spread, axes = principal_axes(mics)
    rank = int((spread >= COPLANAR_RATIO * spread[0]).sum())
    if rank == 1:
        normal = line_normal(axes[0]) if dims == 2 else None  # in 3D a turn about the line: check_array_geometry refuses it
    elif rank == 2 and (dims == 3 or abs(axes[2][2]) < COPLANAR_RATIO):
        normal = axes[2]
    else:
        normal = None
    if normal is None:
        return None
    return normal if normal[np.abs(normal).argmax()] > 0 else -normal


def line_normal(axis: np.ndarray) -> np.ndarray | None:
    """The horizontal unit normal (3,) of a line along ``axis`` (3,); None for a vertical line."""
    across = np.cross([0.0, 0.0, 1.0], axis)
    return across / np.linalg.norm(across) if np.linalg.norm(across) >= COPLANAR_RATIO else None


def bounds_side(mics: np.ndarray, bounds: np.ndarray, normal: np.ndarray) -> int:
    """+1 when the box ``bounds`` (2, 3) lies on the side of the plane through the mics' centroid
    that ``normal`` points to, −1 on the other side (corners in the plane count on either), 0 when
    it reaches both sides."""
    corners = np.array(np.meshgrid(*bounds.T, indexing="ij")).reshape(3, -1).T - mics.mean(axis=0)
    side = corners @ normal
    tolerance = 1e-9 * max(1.0, float(np.abs(corners).max()))
    return 1 if side.min() >= -tolerance else -1 if side.max() <= tolerance else 0


def on_known_side(u: np.ndarray, mics: np.ndarray, dims: int, bounds: np.ndarray | None) -> np.ndarray:
    """Directions u (..., 3) reflected across the mirror the array does not hear
    (:func:`mirror_normal`) onto the side of it that ``bounds`` (2, 3) cover, or
    without bounds on one side, the side its normal points to; unchanged where the array hears
    every mirror. Reflection changes no TDOA, so the power is the same. NaN stays NaN."""
    normal = mirror_normal(mics, dims)
    if normal is None:
        return u
    side = (bounds_side(mics, bounds, normal) if bounds is not None else 0) or 1
    along = u @ normal
    return np.where((along * side < 0)[..., None], u - 2 * along[..., None] * normal, u)


def check_metres(xyz: np.ndarray, where: object) -> None:
    """GeometryError when the finite points (n, 3) spread over more than ``MAX_SPREAD_M``: sslkit
    takes positions in metres, and such a spread is almost surely millimetres or centimetres."""
    finite = xyz[np.isfinite(xyz).all(axis=1)]
    if len(finite) < 2:
        return
    spread = float(np.max(finite.max(axis=0) - finite.min(axis=0)))
    if spread > MAX_SPREAD_M:
        raise GeometryError(f"{where}: positions spread over {spread:.0f} m, but sslkit reads metres: in millimetres they would "
                            f"spread over {spread / 1000:.3g} m, in centimetres {spread / 100:.3g} m; convert them to metres")


def check_geometry(mics: np.ndarray, path: object = "mics.csv") -> None:
    """Reject missing coordinates (NaN, infinite or empty), positions that are not metres, and
    duplicate microphone positions (they make every pair through them degenerate)."""
    missing = np.flatnonzero(~np.isfinite(mics).all(axis=1))
    if len(missing):
        raise GeometryError(f"{path}: microphone {missing[0] + 1} has a missing coordinate (NaN, infinite or empty)")
    check_metres(mics, path)
    same = coinciding_pairs(mics, SAME_POSITION_M)
    if same:
        i, j = same[0]
        raise GeometryError(f"{path}: microphones {i + 1} and {j + 1} have the same position")


SAME_POSITION_M = 1e-6
"""Microphones closer than this are at the same position."""


def coinciding_pairs(points: np.ndarray, reach: float) -> list[tuple[int, int]]:
    """The pairs (i < j, sorted) of points (M, 3) within ``reach`` of each other, without an (M, M)
    table: sorted along x, each point is compared only with those within ``reach`` of it in x."""
    order = np.argsort(points[:, 0], kind="stable")
    x = points[order, 0]
    ends = np.searchsorted(x, x + reach, side="right")
    pairs = []
    for k in np.flatnonzero(ends > np.arange(len(x)) + 1):  # points with another within reach in x: few
        near = order[k + 1 : ends[k]]
        close = near[np.linalg.norm(points[near] - points[order[k]], axis=1) <= reach]
        pairs += [(min(i, int(order[k])), max(i, int(order[k]))) for i in close.tolist()]
    return sorted(pairs)


UNIT_RATIO = 30.0
"""Ratio of typical magnitudes (positions, or SELD distances) from which two sets of them are taken
to be in different units (m against cm or mm)."""

MISREAD_SCALE_M = 10.0
"""Typical distance from the origin (m) beyond which positions can be metres misread from cm or mm:
a position 10 cm or more from the origin, in centimetres, reads as 10 m or more."""


def check_same_units(estimates: np.ndarray, truth: np.ndarray, where: object) -> None:
    """GeometryError when estimates (n, 3) are typically ``UNIT_RATIO`` times farther from the
    frame's origin than the truth (m, 3), or nearer, and the farther of the two lies beyond
    ``MISREAD_SCALE_M`` (one of them in mm or cm); the message gives their typical distance from
    the truth's centre. Estimates that collapsed onto a compact array at the origin, with the truth
    metres away, are errors to score, not a unit mix-up."""
    finite = estimates[np.isfinite(estimates).all(axis=1)]
    if len(finite) == 0 or len(truth) == 0:
        return
    centre = truth.mean(axis=0)
    scale_truth = max(float(np.median(np.linalg.norm(truth, axis=1))), 1e-3)
    scale_est = float(np.median(np.linalg.norm(finite, axis=1)))
    ratio = scale_est / scale_truth
    if (ratio > UNIT_RATIO or ratio < 1 / UNIT_RATIO) and max(scale_est, scale_truth) > MISREAD_SCALE_M:
        typical = float(np.median(np.linalg.norm(finite - centre, axis=1)))
        raise GeometryError(f"{where}: the estimates lie about {typical:.3g} m from the truth and are about {ratio:.3g}× its scale: "
                            "are they in millimetres or centimetres? sslkit reads metres")
