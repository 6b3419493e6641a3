"""The registry of localization methods (:data:`LOCATE_METHODS`) and :func:`locate`, which runs
one of them on a recording with its options given as keyword arguments::

    track = locate(rec, "srp-phat", window=1.0, sources=2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from sslkit.errors import UserError
from sslkit.geometry import speed_of_sound
from sslkit.localization.multilat import locate_multilat
from sslkit.localization.music import locate_music, locate_normmusic
from sslkit.localization.srp import locate_srp
from sslkit.localization.track import PositionTrack, smooth_track
from sslkit.localization.wav2pos import locate_wav2pos
from sslkit.options import DEFAULT_METHOD, LOCATE_OPTIONS, LocateOptions, at_rate, build_options
from sslkit.recording import Recording, room_channels
from sslkit.resources import resolve_device


class LocateMethod(NamedTuple):
    """A localization method: the function that runs it and the dataclass of its options."""

    run: Callable[[Recording, LocateOptions, Callable | None], PositionTrack]
    options: type[LocateOptions]
    summary: str


LOCATE_METHODS: dict[str, LocateMethod] = {
    "srp-phat": LocateMethod(locate_srp, LOCATE_OPTIONS["srp-phat"], "steered response power of GCC-PHAT over a coarse-to-fine cell search"),
    "multilat": LocateMethod(locate_multilat, LOCATE_OPTIONS["multilat"], "robust RANSAC multilateration over TDOA peaks"),
    "wav2pos": LocateMethod(locate_wav2pos, LOCATE_OPTIONS["wav2pos"], "masked-autoencoder network (Paper VII) refined by a lag fit"),
    "music": LocateMethod(locate_music, LOCATE_OPTIONS["music"], "broadband MUSIC directions of arrival (far field)"),
    "normmusic": LocateMethod(locate_normmusic, LOCATE_OPTIONS["normmusic"], "broadband MUSIC with each frequency normalised (far field)"),
}


def locate_method(method: str) -> LocateMethod:
    """The registered method of that name; an unknown name is a UserError listing the methods."""
    if method not in LOCATE_METHODS:
        raise UserError(f"unknown localization method '{method}' (choose from {', '.join(LOCATE_METHODS)})")
    return LOCATE_METHODS[method]


def locate(rec: Recording, method: str = DEFAULT_METHOD, *, on_progress: Callable[[int, int], None] | None = None, **options) -> PositionTrack:
    """Positions of the sources over time with the named method.

    ``options`` are the keyword options of the method's dataclass (``LOCATE_METHODS[method].options``;
    an unknown one is a TypeError listing them). A near-source channel is left out (``room_channels``;
    wav2pos can use it with ``known_source=True``); ``c`` defaults to the recording's scene.yaml, and
    ``device`` may be ``auto``.
    ``on_progress(done, total)`` is called as frames are processed.
    """
    spec = locate_method(method)
    opts = build_options(spec.options, options, f"locate method '{method}'")
    rec = room_channels(rec)  # a near-source channel moves with the source: never a room mic
    opts = replace(opts, c=speed_of_sound(rec.scene, opts.c), device=resolve_device(opts.device))
    if opts.use_mics:
        rec = select_mics(rec, list(opts.use_mics))
    if hasattr(opts, "frame"):
        rec.check_holds(at_rate(opts, rec.fs).frame, "frame")
    track = spec.run(rec, opts, on_progress)
    if opts.smooth > 1:
        for k in np.unique(track.track):
            rows = track.track == k
            track.xyz[rows] = smooth_track(track.xyz[rows], opts.smooth)
    track.fill_directions(rec.mics.mean(axis=0))
    return track


def select_mics(rec: Recording, mic_ids: list[str]) -> Recording:
    """The recording restricted to the listed mic ids (in that order)."""
    missing = [m for m in mic_ids if m not in rec.mic_ids]
    if missing:
        raise UserError(f"use_mics: no mic {missing[0]} in mics.csv (ids: {','.join(rec.mic_ids)})")
    repeated = [m for k, m in enumerate(mic_ids) if m in mic_ids[:k]]
    if repeated:
        raise UserError(f"use_mics: mic {repeated[0]} is listed more than once")
    idx = [rec.mic_ids.index(m) for m in mic_ids]
    return Recording(rec.audio[:, idx], rec.fs, list(mic_ids), rec.mics[idx], rec.sources, rec.scene, rec.path, rec.source_signal)
