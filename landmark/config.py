"""Reading YAML configs safely and checking them before anything runs.

Every config (model, training, augmentation, DMS) is plain YAML read with ``yaml.safe_load``. These helpers
turn every way such a file can be wrong into one ``ConfigError`` line that names the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from landmark.errors import ConfigError, LandmarkError


def read_yaml_text(path: Path) -> str:
    """The text of a YAML file; an unreadable or binary file (a checkpoint or an image given as a config)
    raises ``ConfigError`` instead of a ``UnicodeDecodeError`` traceback."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")  # -sig: a leading byte-order mark is not part of the YAML
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text YAML file (byte {err.start} is not UTF-8 text)") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; missing files, syntax errors and non-mappings raise ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = read_yaml_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def check_keys(cfg: dict, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    """Refuse unknown keys (usually typos) and missing required ones."""
    for key in cfg:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}'; expected one of {', '.join(sorted(allowed))}")
    for key in sorted(required):
        if key not in cfg:
            raise ConfigError(f"{where}: missing required key '{key}'")


def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str = "") -> Any:
    """Return ``value`` if it has the expected type (bools are not numbers here), else raise."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    is_bool = isinstance(value, bool)
    ok = isinstance(value, kinds) and (bool in kinds or not is_bool)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: expected {what or names}, got {value!r}")
    return value


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # the repo's configs/ (source checkouts)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the package's default model lives here


def default_model_path(suffixes: tuple[str, ...] = (".onnx", ".pt")) -> Path:
    """The shipped default model, the first of ``default.onnx`` / ``default.pt`` that exists (in ``suffixes``
    order); ``LandmarkError`` when none is installed."""
    for suffix in suffixes:
        path = WEIGHTS_DIR / f"default{suffix}"
        if path.is_file():
            return path
    names = " or ".join(f"default{s}" for s in suffixes)
    raise LandmarkError(
        f"no model given and no default model ({names}) in {WEIGHTS_DIR}: pass a model "
        "(a checkpoint from 'landmark train' or an ONNX file from 'landmark export')"
    )


def shared_data_dir() -> Path:
    """The read-only shared face data: $LANDMARK_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("LANDMARK_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def expand_path(value: str, base: Path | None = None) -> Path:
    """Expand ``$VARS`` and ``~`` in a config path (``$LANDMARK_SHARED_DATA`` defaults to the shared
    folder); relative paths are taken from ``base`` when given."""
    for name in ("${LANDMARK_SHARED_DATA}", "$LANDMARK_SHARED_DATA"):
        value = value.replace(name, str(shared_data_dir()))
    path = Path(os.path.expanduser(os.path.expandvars(value)))
    if base is not None and not path.is_absolute():
        path = base / path
    return path
