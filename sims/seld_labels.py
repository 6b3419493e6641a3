"""DCASE-format SELD labels from simulated recordings: class, DOA and distance of every active
source per 100 ms label frame, relative to the array centre (the mean mic position).

Azimuth is measured counter-clockwise from +x in the xy-plane, elevation up from it, both in
degrees; distances are written in centimetres, as in DCASE2024 metadata.
"""

from __future__ import annotations

import numpy as np

from sslkit.recording import Recording
from sslkit.seld import SeldEvents


def signal_class(signal_ref: str) -> str:
    """Class name of a resolved signal reference: speech, music, noise, file, or the event or clip class."""
    kind, _, rest = signal_ref.partition(":")
    if kind.startswith("speech/"):
        return "speech"
    if kind in ("event", "clip"):
        return rest.split(":")[0]
    return kind


def dcase_labels(rec: Recording, classes: list[str], label_hop: float = 0.1) -> SeldEvents:
    """Events of ``rec`` per label frame; sources whose class is not in ``classes`` are ignored."""
    centre = rec.mics.mean(axis=0)
    names = [signal_class(s["signal"]) for s in rec.scene["sources"]]
    n_frames = int(np.floor(rec.duration / label_hop + 1e-9))
    truth_hop = float(rec.scene.get("truth_hop", label_hop))
    rows = []
    for sid in np.unique(rec.sources.source_id):
        if names[sid] not in classes:
            continue
        own = rec.sources.of_source(sid)
        frames = np.arange(n_frames)
        t = (frames + 0.5) * label_hop
        active = (t >= own.time.min()) & (t < own.time.max() + truth_hop)  # rows mark the start of each truth hop
        pos = np.stack([np.interp(t[active], own.time, own.xyz[:, k]) for k in range(3)], 1) - centre
        dist = np.linalg.norm(pos, axis=1)
        az = np.degrees(np.arctan2(pos[:, 1], pos[:, 0]))
        el = np.degrees(np.arcsin(np.clip(pos[:, 2] / np.maximum(dist, 1e-9), -1, 1)))
        rows.append(np.stack([frames[active], np.full(active.sum(), classes.index(names[sid])), np.full(active.sum(), sid), az, el, dist], 1))
    data = np.concatenate(rows) if rows else np.zeros((0, 6))
    data = data[np.lexsort((data[:, 2], data[:, 0]))]
    return SeldEvents(data[:, 0].astype(int), data[:, 1].astype(int), data[:, 3], data[:, 4], data[:, 5])


