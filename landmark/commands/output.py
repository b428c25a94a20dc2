"""Writing command results: JSON to a file or standard output, always atomically (``landmark.files``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from landmark.files import write_atomic


def write_json(destination: str, data: Any) -> None:
    """``--json PATH`` convention of every command: ``-`` means standard output."""
    text = json.dumps(data, indent=2) + "\n"
    if destination == "-":
        sys.stdout.write(text)
    else:
        write_atomic(destination, text)
