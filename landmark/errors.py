"""User-facing errors.

Every problem with something a user handed us (a config, an annotation file, an image, a checkpoint, a
video source, a flag) is raised as a ``LandmarkError`` whose message is one line naming the file, line or
key and what was expected. The CLI prints that line and exits with status 2 instead of a traceback.
"""

from __future__ import annotations


class LandmarkError(Exception):
    """A problem with user input, reported as one readable line."""


class ConfigError(LandmarkError):
    """A YAML config (model, training, augmentation, DMS) is missing, malformed or inconsistent."""


class DataError(LandmarkError):
    """An annotation file, image or dataset folder cannot be read as expected."""


def first_line(error: BaseException, limit: int | None = 160, empty: str | None = None) -> str:
    """The first line of an exception's message, at most ``limit`` characters, for a one-line error that
    wraps a library's long (often multi-line) message; ``empty`` (default: the exception's type name) when
    the message is blank."""
    text = str(error).strip()
    if not text:
        return empty or type(error).__name__
    return text.splitlines()[0][:limit]
