"""Writing command results: JSON to a file or standard output, always atomically."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from landmark.errors import LandmarkError


def write_atomic(path: str | Path, text: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it, so a crash never leaves half a file."""
    path = Path(path)
    if not path.parent.exists():
        raise LandmarkError(f"{path}: folder {path.parent} does not exist")
    mode = "wb" if isinstance(text, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; reports and models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(destination: str, data: Any) -> None:
    """``--json PATH`` convention of every command: ``-`` means standard output."""
    text = json.dumps(data, indent=2) + "\n"
    if destination == "-":
        sys.stdout.write(text)
    else:
        write_atomic(destination, text)
