"""Typed user-facing errors: the CLI turns any of these into one line and exit code 2."""


class UserError(Exception):
    """A problem with the user's input (file, option, config) rather than a bug in sslkit."""


class InputFileError(UserError):
    """A file that is missing, unreadable or has invalid content; the message names the file."""

    def __init__(self, path: object, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ConfigError(UserError):
    """An invalid scene/dataset/training configuration (unknown key, bad value, impossible room)."""


class GeometryError(UserError):
    """Microphone or source geometry that cannot give a well-posed answer."""


class OutputError(UserError):
    """An output place that cannot or must not be written (it would replace the user's files)."""


class ResourceError(UserError):
    """A job that cannot fit in this machine's memory; the message gives the estimate and what to change."""


class SslkitWarning(UserWarning):
    """Something the user should know that does not stop the work (clipped audio, a truncated file)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a sentence saying what was kept."""


def describe(err: BaseException) -> str:
    """``Type: first line of the message`` of an exception, short enough for a one-line error."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:120]}" if text else type(err).__name__
