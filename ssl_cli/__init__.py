"""sslkit: sound source localization on ad-hoc microphone arrays."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sslkit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

SPEED_OF_SOUND = 343.0
"""Default speed of sound in m/s, used wherever a command takes ``--c``."""

DEFAULT_METHOD = "srp-phat"
"""Default localization method: per hop the most robust in reverberant rooms of those measured by
benchmarks/reverb_sweep.py, within the speed target (multilat is faster)."""

DEFAULT_WINDOW_S = 0.5
"""Default integration window of ``locate`` (s): each hop's PHAT cross-spectra are averaged over this
span centred on it (see benchmarks/README.md for the trade between lag and robustness)."""

MAX_SOURCES = 8
"""Most simultaneous sources ``locate`` searches per hop."""
