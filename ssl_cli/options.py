"""The keyword options of the library's methods, one dataclass per method, and their defaults.

Callers pass options as keyword arguments (``sslkit.locate(rec, "srp-phat", window=1.0)``); an
unknown one is a TypeError that lists the valid ones. This module imports neither torch nor the
methods, so the command line can show the defaults quickly.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TypeVar

import numpy as np

from sslkit.errors import UserError

Options = TypeVar("Options")

DEFAULT_WINDOW_S = 0.5
"""Default integration window (s) of the classical localizers: each hop's PHAT cross-spectra are
averaged over this span centred on it (see benchmarks/README.md for the trade between lag and robustness)."""
DEFAULT_FRAME_S = 0.128
DEFAULT_HOP_S = 0.064
DEFAULT_SNAPSHOT_S = 0.032
"""Default frame, hop and MUSIC snapshot (s): 2048, 1024 and 512 samples at 16 kHz, as many
seconds at any rate (:func:`at_rate`), so that a 48 kHz recording is cut as its 16 kHz version would be."""


def duration_help(seconds: float) -> str:
    """How help texts state a default given as a duration: ``0.128 s, 2048 at 16 kHz``."""
    return f"{seconds:g} s, {round(seconds * 16000)} at 16 kHz"


MAX_SOURCES = 8
"""Most simultaneous sources searched per hop."""
SILENCE_DB = 40.0
"""Frames more than this many dB below the loudest frame are silent (no estimate)."""
PRECISIONS = ("float32", "bfloat16")
"""Arithmetic of learned models' convolutions (NGCC-PHAT): exact, or bfloat16 where the CPU or GPU has it."""
BATCH_FRAMES = 32
"""Frames whose cross-spectra are computed at once (bounds the memory of every GCC user)."""
EDGE_TAPER = 0.25
"""Share of each frame that PHAT methods taper by default: a Tukey window, cosine ramps over the
first and last eighth (0 is a rectangular frame, 1 a Hann window). Measured against both on the
reverberant sweep and on held-out LuViRA-room recordings (benchmarks/README.md)."""

MAX_VIEWS = 64
"""wav2pos's masked views per frame at most: their spread is the confidence, and each view is another
pass of the network over the frames."""


def option_names(cls: type) -> list[str]:
    """The options an options dataclass declares, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def build_options(cls: type[Options], given: dict, what: str) -> Options:
    """``cls(**given)``, with a TypeError naming ``what`` and listing the valid options when a keyword is unknown."""
    unknown = sorted(set(given) - set(option_names(cls)))
    if unknown:
        raise TypeError(f"{what} takes no option {unknown[0]!r}; its options are {', '.join(option_names(cls))}")
    return cls(**given)


def check_sources_and_window(sources: int, window: float) -> None:
    """UserError for a source count outside 1…MAX_SOURCES or a negative integration window."""
    if not 1 <= sources <= MAX_SOURCES:
        raise UserError(f"sources = {sources}: up to {MAX_SOURCES} sources are located per hop")
    if not window >= 0:
        raise UserError(f"window = {window}: the integration window is a non-negative number of seconds")


def check_static(opts: Options) -> None:
    """UserError for options a static run ignores: it takes the whole recording as one window and
    gives one estimate per source, so an integration window, a running median or wav2pos's window of
    starting points (it starts from the median of all its estimates) has nothing to do."""
    if opts.static:
        given = options_set(opts, [name for name in ("window", "smooth", "start_window") if hasattr(opts, name)])
        if given:
            raise UserError(f"static takes the whole recording as one window (one estimate per source): {' and '.join(given)} would do nothing")


def check_beta(opts: Options) -> None:
    """UserError for a β-PHAT exponent given with another weighting, which would ignore it."""
    if opts.weighting != "beta-phat" and options_set(opts, ["beta"]):
        raise UserError(f"beta = {opts.beta}: the exponent of weighting beta-phat, but weighting is {opts.weighting}")


def check_dims(dims: int) -> None:
    """UserError unless localization is in 3 (x, y, z) or 2 (x, y) dimensions."""
    if dims not in (2, 3):
        raise UserError(f"dims = {dims}: localization is in 3 (x, y, z) or 2 (x, y) dimensions")


def check_taper(taper: float | None) -> None:
    """UserError for a taper outside [0, 1] (None: chosen per recording, :func:`~sslkit.hum.phat_taper`)."""
    if taper is not None and not (isinstance(taper, numbers.Real) and 0 <= taper <= 1):
        raise UserError(f"taper = {taper!r}: the share of each frame under the window's ramps, from 0 (rectangular) to 1 (Hann)")


def check_choice(name: str, value: object, choices: Sequence[str], shown: Sequence[str] | None = None) -> None:
    """UserError when ``value`` of the option ``name`` is not one of ``choices`` (listed as ``shown``,
    default the choices themselves)."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(shown or choices)}, got '{value}'")


def check_precision(precision: str) -> None:
    """UserError for a precision not in PRECISIONS."""
    check_choice("precision", precision, PRECISIONS)


@dataclass
class TdoaOptions:
    """Options of the TDOA methods.

    frame, hop: samples per frame and between frames (None: ``DEFAULT_FRAME_S`` and
    ``DEFAULT_HOP_S`` at the rate the method works at, :func:`at_rate`); pairs: ``all``, ``ref:K`` or a list such as
    ``1-2,1-3``; peaks: TDOA candidates per frame and pair, at least ``min_separation_s`` apart;
    max_tau: ``auto`` (from the mic distances) or a bound in seconds; weighting: ``phat``,
    ``beta-phat`` (exponent ``beta``) or ``cc``; upsample: correlation interpolation factor;
    silence_db: frames this far below the loudest are silent; c: speed of sound (None: the
    recording's); checkpoint: NGCC-PHAT checkpoint (None: the shipped one covering the array);
    window: seconds over which each frame's cross-spectra (NGCC-PHAT: lag probabilities) are
    averaged, centred on it; static: the whole recording is one window; batch_frames: frames
    processed at once; precision: ``float32``, or ``bfloat16`` for NGCC-PHAT's convolutions
    (faster where the device has bfloat16 arithmetic, :func:`~sslkit.resources.native_bfloat16`); max_freq: highest frequency (Hz) GCC-PHAT keeps (None:
    the whole band, or the occupied band of upsampled audio: :func:`~sslkit.recording.phat_max_freq`);
    taper: the share of each frame under the window's ramps before GCC-PHAT
    (:func:`~sslkit.gcc.cross_spectra`): 0 or False rectangular, 1 or True Hann; None: ``EDGE_TAPER``,
    or Hann where the recording carries mains hum (:func:`~sslkit.hum.phat_taper`).
    """

    frame: int | None = None
    hop: int | None = None
    pairs: str = "all"
    peaks: int = 1
    min_separation_s: float = 1e-4
    max_tau: str = "auto"
    weighting: str = "phat"
    beta: float = 0.7
    upsample: int = 1
    silence_db: float = SILENCE_DB
    c: float | None = None
    device: str = "cpu"
    checkpoint: str | None = None
    batch_frames: int = BATCH_FRAMES
    window: float = 0.0
    static: bool = False
    precision: str = "float32"
    max_freq: float | None = None
    taper: float | None = None

    def __post_init__(self) -> None:
        check_taper(self.taper)
        check_static(self)
        check_beta(self)
        if not (isinstance(self.min_separation_s, numbers.Real) and np.isfinite(self.min_separation_s) and self.min_separation_s >= 0):
            raise UserError(f"min_separation = {self.min_separation_s!r}: peaks are a non-negative number of seconds apart")


@dataclass
class LocateOptions:
    """Options every localization method takes.

    hop: samples between estimates (None: ``DEFAULT_HOP_S`` at the rate the method works at,
    :func:`at_rate`); bounds: search box (2, 3) in metres, lower and upper corner
    (None: :func:`default_bounds`); smooth: running median over this many hops (0: off);
    use_mics: only these mic ids, in this order; c: speed of sound in m/s (None: the recording's
    scene.yaml, else 343); device: torch device.
    """

    hop: int | None = None
    bounds: np.ndarray | Sequence | None = None
    smooth: int = 0
    use_mics: Sequence[str] | None = None
    c: float | None = None
    device: str = "cpu"


@dataclass
class ArrayOptions(LocateOptions):
    """Options of the classical (signal-processing) methods.

    frame: samples per analysis frame (None: ``DEFAULT_FRAME_S``, :func:`at_rate`); dims: 3 (x, y, z) or 2 (x, y at ``height``, default the mean
    mic height); window: seconds over which each hop's PHAT cross-spectra are averaged, centred on
    it (0: the hop alone); static: the whole recording is one window (one estimate per source);
    sources: sources located per hop, strongest first; max_freq: highest frequency (Hz) of the PHAT
    cross-spectra (None: the whole band, or the occupied band of upsampled audio:
    :func:`~sslkit.recording.phat_max_freq`); taper: the share of each frame under the window's
    ramps before the PHAT cross-spectra (:func:`~sslkit.gcc.cross_spectra`): 0 or False rectangular,
    1 or True Hann; None: ``EDGE_TAPER``, or Hann where the recording carries mains hum
    (:func:`~sslkit.hum.phat_taper`).
    """

    frame: int | None = None
    dims: int = 3
    height: float | None = None
    window: float = DEFAULT_WINDOW_S
    static: bool = False
    sources: int = 1
    max_freq: float | None = None
    taper: float | None = None

    def __post_init__(self) -> None:
        check_sources_and_window(self.sources, self.window)
        check_static(self)
        check_taper(self.taper)
        check_dims(self.dims)


@dataclass
class MultilatOptions(ArrayOptions):
    """Options of robust multilateration.

    tdoa: the TDOA method (``gcc-phat``, ``ngcc``) or a tdoa.csv file; checkpoint: NGCC-PHAT
    checkpoint for ``tdoa="ngcc"`` (None: the shipped one that covers the array); peaks: TDOA peaks
    per pair RANSAC chooses from; weighting, beta, max_tau: GCC settings (see
    :class:`~sslkit.tdoa.TdoaOptions`); pool: TDOAs of this many consecutive hops merged into one
    estimate; threshold: RANSAC inlier threshold on range differences (m); hypotheses: minimal sets
    per hop; min_inliers: pairs needed to accept a hop (None: max(dims + 2, a fifth of the pairs));
    seed: of the RANSAC sampling; precision: of NGCC-PHAT (see :class:`TdoaOptions`).
    """

    tdoa: str = "gcc-phat"
    checkpoint: str | None = None
    peaks: int = 4
    weighting: str = "phat"
    beta: float = 0.7
    max_tau: str = "auto"
    pool: int = 1
    threshold: float = 0.1
    hypotheses: int = 400
    min_inliers: int | None = None
    seed: int = 0
    precision: str = "float32"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_beta(self)


MULTILAT_TDOA_OPTIONS = ("frame", "hop", "window", "static", "max_freq", "taper", "checkpoint", "peaks", "weighting", "beta", "max_tau", "precision")
"""The :class:`MultilatOptions` that shape how its TDOAs are estimated: TDOAs read from a tdoa.csv take none of them."""


@dataclass
class SrpOptions(ArrayOptions):
    """Options of SRP-PHAT: the search's first-level cell side (m; None: ``srp.COARSE_STEP``, wider
    where many pairs would make the first level's steering outgrow ``srp.STEERING_BUDGET_BYTES``),
    leaf cell side (m; the leaves' centres are the answers) and beam, half the cells kept per level and frame (the best by bound
    and by centre power in turn; wider comes closer to an exhaustive search and costs in
    proportion); far_field: directions of arrival (azimuth, elevation from the mics' centroid)
    instead of positions, for arrays small next to the sources' distance. beam None: the search's own
    default (``srp.BEAM`` for positions, ``directions.BEAM`` for directions)."""

    coarse_step: float | None = None
    final_step: float = 0.005
    beam: int | None = None
    far_field: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.far_field and self.height is not None:
            raise UserError(f"height = {self.height}: far-field directions have no height (dims 2 gives horizontal directions)")
        cell_sides = options_set(self, ["coarse_step", "final_step"]) if self.far_field else []
        if cell_sides:
            named = [f"{name} (--resolution)" if name == "final_step" else name for name in cell_sides]
            raise UserError(f"{' and '.join(named)} {'sizes' if len(named) == 1 else 'size'} the position search's cells in metres; the far-field search refines "
                            "directions on its own grid")
        if self.beam is not None and not (isinstance(self.beam, numbers.Integral) and self.beam >= 1):
            raise UserError(f"beam = {self.beam!r}: the cells kept per search level must be a positive integer (None: the default)")
        sides = {"final_step": self.final_step} | ({} if self.coarse_step is None else {"coarse_step": self.coarse_step})
        for name, side in sides.items():
            if not (isinstance(side, numbers.Real) and 0 < side < np.inf):
                raise UserError(f"{name} = {side!r}: a search cell's side is a positive number of metres")


@dataclass
class Wav2PosOptions(LocateOptions):
    """Options of wav2pos.

    checkpoint: a wav2pos checkpoint (None: the shipped one); known_source: the near-source channel
    (``rec.source_signal``) gives the source signal (setup 1b); unknown_mics: ids of mics whose
    positions are unknown and estimated (setup 2); refine_radius: refine each estimate within this
    many metres by fitting the model's lag distributions (0: the network's estimate);
    start_window: the fit starts from the median of the network's estimates over this many frames;
    views: with refine_radius 0, extra passes that each hide 2 mics' audio, whose spread gives the
    confidence (0: confidence 1); seed: of the views' random choices; window: seconds over which
    the model's lag distributions are averaged (active frames) before the fit (without the fit: a
    running median of the network's estimates); static: the whole recording is one window (one
    position); precision: of the NGCC-PHAT in the model (see :class:`TdoaOptions`).
    """

    checkpoint: str | None = None
    known_source: bool = False
    unknown_mics: Sequence[str] = ()
    refine_radius: float = 1.0
    start_window: int = 9
    views: int = 8
    seed: int = 0
    window: float = 0.0
    static: bool = False
    precision: str = "float32"

    def __post_init__(self) -> None:
        check_sources_and_window(1, self.window)
        check_static(self)
        if self.refine_radius > 0 and options_set(self, ["views"]):
            raise UserError(f"views = {self.views}: the views give the network's own estimates a confidence (refine_radius 0); "
                            "the fit gives its own")
        if self.refine_radius == 0 and options_set(self, ["start_window"]):
            raise UserError(f"start_window = {self.start_window}: where the fit starts, and refine_radius 0 fits nothing")
        check_precision(self.precision)
        if not (isinstance(self.views, numbers.Integral) and 0 <= self.views <= MAX_VIEWS):
            raise UserError(f"views = {self.views!r}: from 0 to {MAX_VIEWS} masked views per frame")


@dataclass
class MusicOptions(LocateOptions):
    """Options of MUSIC and NormMUSIC (far field: directions only).

    frame: samples per hop's frame (None: ``DEFAULT_FRAME_S``, :func:`at_rate`; hop times and silence as the other methods); snapshot: samples
    per short-time spectrum (None: ``DEFAULT_SNAPSHOT_S``); window: seconds of snapshots averaged into each hop's covariance
    (at least the frame); static: the whole recording is one window; sources: directions per hop;
    dims: 3 (azimuth and elevation) or 2 (horizontal directions: azimuth only).
    """

    frame: int | None = None
    snapshot: int | None = None
    window: float = DEFAULT_WINDOW_S
    static: bool = False
    sources: int = 1
    dims: int = 3

    def __post_init__(self) -> None:
        check_sources_and_window(self.sources, self.window)
        check_static(self)
        check_dims(self.dims)


LOCATE_OPTIONS: dict[str, type[LocateOptions]] = {"srp-phat": SrpOptions, "multilat": MultilatOptions, "wav2pos": Wav2PosOptions,
                                                  "music": MusicOptions, "normmusic": MusicOptions}
"""The options of each localization method, by method name (the methods: :data:`sslkit.localization.LOCATE_METHODS`)."""
DEFAULT_METHOD = "srp-phat"
"""Default localization method: per hop the most robust in reverberant rooms of those measured by
benchmarks/reverb_sweep.py (README: choosing a method)."""
TDOA_METHOD_NAMES = ("gcc-phat", "ngcc")
"""The TDOA methods (:data:`sslkit.tdoa.TDOA_METHODS`)."""
TDOA_METHOD_OPTIONS = {"gcc-phat": ("weighting", "beta", "upsample", "max_freq", "taper"), "ngcc": ("checkpoint", "precision")}
"""The options of :class:`TdoaOptions` that shape one TDOA method only."""


def options_set(opts: Options, names: Sequence[str]) -> list[str]:
    """Those of the options ``names`` that ``opts`` (a dataclass of options) holds away from their defaults."""
    defaults = {f.name: f.default for f in fields(opts)}
    return [name for name in names if getattr(opts, name) != defaults[name]]


def check_tdoa_method_options(method: str, opts: TdoaOptions) -> None:
    """UserError when an option of the other TDOA method is set (away from its default): it would be ignored."""
    for other, names in TDOA_METHOD_OPTIONS.items():
        given = options_set(opts, names) if other != method else []
        if given:
            raise UserError(f"{' and '.join(given)} {'shapes' if len(given) == 1 else 'shape'} {other} only, not {method}"
                            + (" (NGCC-PHAT's network sees the frames as it was trained on)" if method == "ngcc" else ""))


def at_rate(opts: Options, fs: float, given_at: float | None = None) -> Options:
    """``opts`` with its frame, hop and snapshot in samples at ``fs`` Hz, the rate the method works
    at (a model's rate for learned methods): where None, ``DEFAULT_FRAME_S``, ``DEFAULT_HOP_S`` and
    ``DEFAULT_SNAPSHOT_S``; where given, in samples at ``given_at`` Hz (the recording's rate; None:
    ``fs``), as many seconds at ``fs`` (at least one sample); a given value that is not a positive
    whole number is a UserError."""
    defaults = {"frame": DEFAULT_FRAME_S, "hop": DEFAULT_HOP_S, "snapshot": DEFAULT_SNAPSHOT_S}
    for name in defaults:
        value = getattr(opts, name, None)
        if value is not None and not (isinstance(value, numbers.Integral) and value > 0):
            raise UserError(f"{name} = {value}: a positive whole number of samples")
    seconds = {name: default if getattr(opts, name) is None else getattr(opts, name) / (given_at or fs)
               for name, default in defaults.items() if hasattr(opts, name)}
    return dataclasses.replace(opts, **{name: max(1, int(round(s * fs))) for name, s in seconds.items()})
