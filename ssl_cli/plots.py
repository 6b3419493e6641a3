"""PNG figures: localization tracks (top view + coordinates over time) and error CDFs."""

from __future__ import annotations

import os

import numpy as np

from sslkit.evaluation import ANGLE_THRESHOLD_DEG
from sslkit.files import atomic_file
from sslkit.localization.track import PositionTrack
from sslkit.recording import SourceTrack


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


def plot_track(path: str | os.PathLike, track: PositionTrack, mics: np.ndarray, bounds: np.ndarray,
               truth: SourceTrack | None = None, title: str = "") -> None:
    """Top view of room, mics and estimated track (coloured by confidence), with x/y/z over time.
    A track of directions only (far field): each direction drawn from the mics' centroid to the
    edge of the view, with azimuth and elevation (azimuth only for horizontal directions) over time;
    the truth's directions likewise."""
    from sslkit.evaluation import directions_only
    from sslkit.localization.directions import azimuth_elevation, unit_vector

    plt = _pyplot()
    fig = plt.figure(figsize=(11, 5))
    top = fig.add_subplot(1, 2, 1)
    lo, hi = bounds
    centre, reach = mics.mean(axis=0), 0.5 * float(np.linalg.norm(hi[:2] - lo[:2]))
    directions = directions_only(track)
    if directions:  # seen from the centroid, drawn at the edge of the view; over time in degrees
        def shown(xyz: np.ndarray) -> np.ndarray:
            return centre + reach * unit_vector(*azimuth_elevation(xyz - centre))

        def series(xyz: np.ndarray) -> np.ndarray:
            return np.stack(azimuth_elevation(xyz - centre), axis=1)

        elevation = np.zeros_like(track.azimuth) if track.horizontal else track.elevation  # azimuths only: drawn in the plane
        estimates, over_time = centre + reach * unit_vector(track.azimuth, elevation), np.stack([track.azimuth, elevation], 1)
        names = ["azimuth (°)"] if track.horizontal else ["azimuth (°)", "elevation (°)"]
    else:
        shown = series = lambda xyz: xyz  # noqa: E731
        estimates, over_time, names = track.xyz, track.xyz, ["x (m)", "y (m)", "z (m)"]
    top.add_patch(plt.Rectangle(lo[:2], *(hi - lo)[:2], fill=False, color="0.4", lw=1.5))
    top.scatter(mics[:, 0], mics[:, 1], marker="^", color="k", s=40, label="mics", zorder=3)
    for i, m in enumerate(mics):
        top.annotate(str(i + 1), m[:2], textcoords="offset points", xytext=(3, 3), fontsize=7)
    if truth is not None:
        for sid in np.unique(truth.source_id):
            own = shown(truth.of_source(sid).xyz)
            top.plot(own[:, 0], own[:, 1], color="tab:green", lw=2, marker="x", ms=8, markevery=max(1, len(own) // 20),
                     label="ground truth" if sid == truth.source_id.min() else None, zorder=4)
    ok = np.isfinite(estimates).all(1)
    sc = top.scatter(estimates[ok, 0], estimates[ok, 1], c=track.confidence[ok], cmap="viridis", vmin=0, vmax=1, s=12,
                     label="estimated direction" if directions else "estimate", zorder=2)
    fig.colorbar(sc, ax=top, label="confidence", shrink=0.8)
    top.set_aspect("equal")
    view = np.stack([lo[:2], hi[:2]] + ([centre[:2] - reach, centre[:2] + reach] if directions else []))
    top.set_xlim(view[:, 0].min() - 0.3, view[:, 0].max() + 0.3)
    top.set_ylim(view[:, 1].min() - 0.3, view[:, 1].max() + 0.3)
    top.set_xlabel("x (m)")
    top.set_ylabel("y (m)")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title or "top view")
    for k, name in enumerate(names):
        ax = fig.add_subplot(len(names), 2, 2 * k + 2)
        ax.plot(track.times[ok], over_time[ok, k], ".", ms=3, color="tab:blue")
        if truth is not None:
            for sid in np.unique(truth.source_id):
                own = truth.of_source(sid)
                if len(own.time) == 1:  # listed once: static for the whole recording
                    ax.axhline(series(own.xyz)[0, k], color="tab:green", lw=1.5)
                else:
                    ax.plot(own.time, series(own.xyz)[:, k], color="tab:green", lw=1.5)
        ax.set_ylabel(name)
        if k == len(names) - 1:
            ax.set_xlabel("time (s)")
    fig.tight_layout()
    _save(fig, path)


def plot_error_cdf(path: str | os.PathLike, errors: dict[str, np.ndarray], threshold: float,
                   angles: dict[str, np.ndarray] | None = None) -> None:
    """Cumulative distributions of localization errors (m), one curve per prediction file, and
    beside them those of direction errors (degrees) where ``angles`` has any."""
    plt = _pyplot()
    panels = [(errors, "error (m)", threshold, f"{threshold * 100:.0f} cm", max(1.0, 3 * threshold)),
              (angles or {}, "direction error (°)", ANGLE_THRESHOLD_DEG, f"{ANGLE_THRESHOLD_DEG:g}°", 6 * ANGLE_THRESHOLD_DEG)]
    panels = [panel for panel in panels if panel[0]] or panels[:1]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (curves, label, limit, limit_label, reach) in zip(axes[0], panels):
        for name, err in curves.items():
            e = np.sort(err)
            ax.step(e, np.arange(1, len(e) + 1) / len(e), where="post", label=name)
        ax.axvline(limit, color="0.5", ls="--", lw=1, label=limit_label)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction of frames")
        ax.set_xlim(0, reach)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
