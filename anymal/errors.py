"""User-facing error types. Each message says what was wrong, where, and what was expected."""


class AnymalError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class InputError(AnymalError, ValueError):
    """A user input (file, message part, array) cannot be used."""


class TooLargeError(InputError):
    """An input over a size, length or duration limit (the server answers 413)."""


class DataError(AnymalError, ValueError):
    """A dataset manifest line is malformed or points at unusable media."""


class ManifestMismatchError(AnymalError):
    """A checkpoint's manifest disagrees with the backbones it is being loaded with."""


class CheckpointError(AnymalError):
    """A checkpoint directory is missing, incomplete or unreadable."""


class ConfigError(AnymalError, ValueError):
    """A recipe/config value has the wrong type or an unknown key."""


class TrainingError(AnymalError):
    """Training cannot go on (non-finite loss, a resume that does not match the run)."""
