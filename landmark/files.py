"""Writing result files safely: atomically (a temporary file beside the target, then a rename), and with
one-line errors.

A path that cannot be written (``afile/x`` under a file, a folder where a file is meant, ``/proc/x``) is one
``LandmarkError`` line naming it and the reason, never an ``OSError`` traceback. Commands that work a long
time before they write (train, bench, demo) call ``check_writable`` first, so the problem shows in a second.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from landmark.errors import LandmarkError, first_line


def _strerror(error: OSError) -> str:
    return error.strerror or first_line(error)


def _file_in_the_way(path: Path) -> Path | None:
    """The first of ``path``'s parents, from the top, that exists but is not a folder (``afile`` in ``afile/x``)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (relative or absolute, through symlinks, existing or not)."""
    return Path(a).resolve() == Path(b).resolve()


def check_path(path: str | Path, label: str = "", folder: bool = False) -> Path:
    """Raise one ``LandmarkError`` line (``label`` is the flag) if ``path`` has the wrong kind -- a folder
    where a file is meant, or a file where a folder is (``folder=True``) -- or sits under a file."""
    path = Path(path)
    name = f"{label} {path}".strip()
    if folder and path.exists() and not path.is_dir():
        raise LandmarkError(f"{name}: is a file, expected a folder")
    if not folder and path.is_dir():
        raise LandmarkError(f"{name}: is a folder, expected a file path")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise LandmarkError(f"{name}: {blocker} is a file, not a folder")
    return path


def make_folder(folder: str | Path, label: str = "") -> Path:
    """Create ``folder`` and its parents for results; one ``LandmarkError`` line (``label`` is the flag) if not."""
    folder = check_path(folder, label, folder=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LandmarkError(f"{label} {folder}: cannot create this folder ({_strerror(error)})".strip()) from None
    return folder


def check_writable(path: str | Path, label: str = "", folder: bool = False) -> Path:
    """Raise one ``LandmarkError`` line now if ``path`` could not be written later -- as a file, or as a folder
    to write into (``folder=True``) -- for commands that work a long time before they write. It creates nothing
    that stays: a probe file in the nearest existing folder is removed at once."""
    path = check_path(path, label, folder)
    nearest = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
    try:
        fd, probe = tempfile.mkstemp(dir=nearest, prefix=".landmark-probe-")
    except OSError as error:
        raise LandmarkError(f"{label} {path}: cannot write in {nearest} ({_strerror(error)})".strip()) from None
    os.close(fd)
    os.unlink(probe)
    return path


def write_atomic(path: str | Path, text: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it, so a crash never leaves half a file."""
    path = check_path(path)
    if not path.parent.exists():
        raise LandmarkError(f"{path}: folder {path.parent} does not exist")
    mode = "wb" if isinstance(text, bytes) else "w"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise LandmarkError(f"{path}: cannot write in {path.parent} ({_strerror(error)})") from None
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; reports and models are meant to be shared
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):  # a full disk, a folder created at path meanwhile, ...
            raise LandmarkError(f"{path}: cannot write it ({_strerror(error)})") from None
        raise
