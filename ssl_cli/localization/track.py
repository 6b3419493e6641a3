"""The result of localization, :class:`PositionTrack`, and its file ``positions.csv``."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslkit.errors import InputFileError
from sslkit.files import read_csv_columns, write_csv
from sslkit.geometry import check_metres

POSITION_COLUMNS = ["time", "x", "y", "z", "confidence", "n_inliers", "track", "azimuth_deg", "elevation_deg"]


@dataclass
class PositionTrack:
    """Estimated positions, one row per hop and track (several tracks: several sources per hop).

    times (R,) s, xyz (R, 3) m (NaN = no solution, or a far-field method), confidence (R,),
    n_inliers (R,), track (R,) the source's rank within its hop (0 = strongest; all 0 for one
    source), azimuth and elevation (R,) in degrees seen from the array's centroid (see
    :mod:`sslkit.localization.directions`; NaN = no solution; an azimuth without elevation is a
    horizontal direction, from a search of the horizontal plane that estimates no elevation).
    """

    times: np.ndarray
    xyz: np.ndarray
    confidence: np.ndarray
    n_inliers: np.ndarray
    warnings: list[str] = field(default_factory=list)
    estimated_mics: dict[str, np.ndarray] = field(default_factory=dict)
    """Positions estimated for mics given with unknown coordinates (wav2pos), by mic id."""
    track: np.ndarray | None = None
    azimuth: np.ndarray | None = None
    elevation: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.track is None:
            self.track = np.zeros(len(self.times), dtype=int)

    @property
    def located(self) -> np.ndarray:
        """Rows (R,) with an answer: a position, or a direction from a far-field method."""
        has_direction = ~np.isnan(self.azimuth) if self.azimuth is not None else np.zeros(len(self.times), bool)
        return ~np.isnan(self.xyz).any(1) | has_direction

    @property
    def horizontal(self) -> bool:
        """Whether the track's directions are azimuths only (a horizontal far-field search)."""
        if self.azimuth is None or self.elevation is None:
            return False
        found = np.isfinite(self.azimuth)
        return bool(found.any()) and not np.isfinite(self.elevation[found]).any()

    def fill_directions(self, origin: np.ndarray) -> None:
        """Azimuth and elevation of the positions seen from ``origin`` (3,), where a method gave none."""
        if self.azimuth is None:
            from sslkit.localization.directions import azimuth_elevation

            self.azimuth, self.elevation = azimuth_elevation(self.xyz - origin)

    @classmethod
    def from_directions(cls, times: np.ndarray, u: np.ndarray, confidence: np.ndarray, n_inliers: np.ndarray,
                        warning: str | None = None, horizontal: bool = False) -> PositionTrack:
        """Rows of a far-field method from per-hop directions of S sources: u (F, S, 3) unit vectors
        (NaN: none); ``horizontal``: directions searched in the horizontal plane, azimuths only."""
        from sslkit.localization.directions import azimuth_elevation

        track = cls.from_hops(times, np.full(u.shape, np.nan), confidence, n_inliers, warning)
        track.azimuth, track.elevation = azimuth_elevation(u.reshape(-1, 3))
        if horizontal:
            track.elevation = np.full_like(track.azimuth, np.nan)
        return track

    @classmethod
    def from_hops(cls, times: np.ndarray, xyz: np.ndarray, confidence: np.ndarray, n_inliers: np.ndarray, warning: str | None = None) -> PositionTrack:
        """Rows from per-hop arrays of S sources: times (F,), xyz (F, S, 3), confidence and n_inliers (F, S)."""
        f, s = confidence.shape
        return cls(np.repeat(times, s), xyz.reshape(f * s, 3), confidence.ravel(), n_inliers.ravel(), [warning] if warning else [],
                   track=np.tile(np.arange(s), f))


def smooth_track(xyz: np.ndarray, window: int) -> np.ndarray:
    """Running median over ``window`` frames that ignores NaN; frames without a solution stay NaN.
    Frame i's window is i − ⌊window/2⌋ … i + ⌈window/2⌉ − 1 (centred when ``window`` is odd), cut
    to the frames there are. Shape (F, 3) → (F, 3)."""
    if len(xyz) == 0:
        return xyz
    before, after = (min(side, len(xyz) - 1) for side in (window // 2, window - 1 - window // 2))  # wider reaches no further
    padded = np.pad(xyz, ((before, after), (0, 0)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, before + after + 1, axis=0)  # (F, 3, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: the result is NaN, as wanted
        smoothed = np.nanmedian(windows, axis=-1)
    return np.where(np.isnan(xyz), np.nan, smoothed)


def write_positions(path: str | os.PathLike, track: PositionTrack) -> None:
    azimuth = track.azimuth if track.azimuth is not None else np.full(len(track.times), np.nan)
    elevation = track.elevation if track.elevation is not None else np.full(len(track.times), np.nan)
    rows = ([t, *xyz, conf, int(n), int(k), az, el]
            for t, xyz, conf, n, k, az, el in zip(track.times, track.xyz, track.confidence, track.n_inliers, track.track, azimuth, elevation))
    write_csv(path, POSITION_COLUMNS, rows)


def read_positions(path: str | os.PathLike) -> PositionTrack:
    """Read a ``positions.csv`` (time,x,y,z[,confidence,n_inliers,track,azimuth_deg,elevation_deg]);
    empty/nan cells are NaN."""
    cols = read_csv_columns(Path(path), ["time", "x", "y", "z"], ["confidence", "n_inliers", "track", "azimuth_deg", "elevation_deg"])
    n = len(cols["time"])
    if n == 0:
        raise InputFileError(path, "no rows")
    if not np.all(np.isfinite(cols["time"])):
        raise InputFileError(path, "time must be a number on every row")
    xyz = np.stack([cols["x"], cols["y"], cols["z"]], 1)
    check_metres(xyz, path)
    partial = np.flatnonzero(np.isnan(xyz).any(1) & ~np.isnan(xyz).all(1))  # a position is all three or none
    if len(partial):
        raise InputFileError(path, f"line {partial[0] + 2}: x, y and z are either all given or all empty (no position)")
    conf = cols.get("confidence", np.ones(n))
    n_in = cols.get("n_inliers", np.zeros(n))
    n_in = np.where(np.isfinite(n_in) & (np.abs(n_in) < 2**31), n_in, 0).astype(int)  # informative only: unreadable counts are 0
    track = cols.get("track", np.zeros(n))
    if not np.all(np.isfinite(track) & (track >= 0) & (track < 2**31) & (track == np.round(track))):
        raise InputFileError(path, "track must be a non-negative integer on every row")
    elevation = cols.get("elevation_deg")
    outside = np.flatnonzero(np.abs(elevation) > 90) if elevation is not None else []  # NaN (no direction) is not outside
    if len(outside):
        raise InputFileError(path, f"line {outside[0] + 2}: elevation_deg {elevation[outside[0]]:g} is outside [-90, 90]")
    _, first, counts = np.unique(np.stack([cols["time"], track], 1), axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        row = int(first[counts > 1].min())
        raise InputFileError(path, f"line {row + 2}: time {cols['time'][row]:g}, track {int(track[row])} has more than one row")
    return PositionTrack(cols["time"], xyz, conf, n_in, track=track.astype(int),
                         azimuth=cols.get("azimuth_deg"), elevation=cols.get("elevation_deg"))
