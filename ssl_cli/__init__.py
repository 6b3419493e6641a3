"""sslkit: sound source localization on ad-hoc microphone arrays."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sslkit")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

SPEED_OF_SOUND = 343.0
"""Default speed of sound in m/s, used wherever a command takes ``--c``."""
