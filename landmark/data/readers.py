"""Annotation readers: WFLW lists, 300-W ``.pts`` folders, dlib's imglab XML and the project's own CSV / JSON
tables.

Every reader returns a list of ``FaceRecord`` with 0-based pixel coordinates (pixel centres at integers)
and checks what it reads: a bad line raises ``DataError`` with one line naming the file, the line and what
was expected. With ``skip_invalid=True`` bad samples are dropped instead and one warning counts them.

Own formats for user data (``read_table``), 0-based pixel coordinates, image paths relative to the file:

CSV -- one face per row; a header row names the columns::

    image,x0,y0,x1,y1,...,x67,y67[,box_x_min,box_y_min,box_x_max,box_y_max]
    faces/0001.jpg,81.0,109.4,82.0,130.9,...

  The four box columns are optional (all or none); without them the face box is taken from the points.

JSON -- a list of faces::

    [{"image": "faces/0001.jpg", "points": [[81.0, 109.4], [82.0, 130.9], ...],
      "box": [x_min, y_min, x_max, y_max]}]

  ``box`` is optional.

Every reader also refuses faces no metric can score: degenerate points (a landmark box or, for the 68- and
98-point schemes, an eye-corner or eye-centre distance under ``MIN_SPAN_PX``) and points farther than one
image size outside their image.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from landmark.data.schemes import scheme_for
from landmark.errors import DataError

logger = logging.getLogger(__name__)

NUM_ATTRIBUTES = 6  # WFLW: pose, expression, illumination, make-up, occlusion, blur
WFLW_POINTS = 98
WFLW_LIST_DIR = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test"
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".ppm")
BOX_COLUMNS = ("box_x_min", "box_y_min", "box_x_max", "box_y_max")
TABLE_FORMATS = ("csv", "json")
# Below one pixel an annotation cannot tell points apart, and NME divides by these distances.
MIN_SPAN_PX = 1.0


@dataclass
class FaceRecord:
    image_path: Path
    points: np.ndarray  # (K, 2) float32, 0-based pixel coordinates
    box: np.ndarray | None = None  # (4,) float32 x_min y_min x_max y_max, when annotated
    attributes: np.ndarray = field(default_factory=lambda: np.zeros(NUM_ATTRIBUTES, np.uint8))
    source: str = ""  # "file:line", for error messages about this sample


# --- checks shared by all readers --------------------------------------------------------------------------


def _numbers(values: Iterable[str], where: str, what: str) -> np.ndarray:
    """Parse text fields as finite floats, naming the first bad one."""
    out = []
    for i, text in enumerate(values):
        if isinstance(text, bool):  # JSON true/false: float() would take them as 1.0 / 0.0
            raise DataError(f"{where}: {what} value {i} is not a number: {text!r}")
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise DataError(f"{where}: {what} value {i} is not a number: {text!r}") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: {what} value {i} is not finite: {text!r}")
        out.append(value)
    return np.asarray(out, dtype=np.float32)


def _check_box(box: np.ndarray, where: str) -> np.ndarray:
    if box[2] <= box[0] or box[3] <= box[1]:
        raise DataError(f"{where}: face box {box.tolist()} must have x_max > x_min and y_max > y_min")
    return box


def _check_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise DataError(f"{where}: image not found: {path}")
    return path


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the image header, or None when it is not a readable image: decoding it (and the
    error for an image that does not decode) is left to ``load_image``, when the sample is used."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _check_points(points: np.ndarray, image_path: Path, where: str) -> np.ndarray:
    """Refuse points that no metric can score: a degenerate face (every NME normaliser -- landmark box,
    inter-ocular and inter-pupil distance -- must be at least ``MIN_SPAN_PX``) or points far outside the
    image (more than one image size beyond its edges: a unit or offset mistake, not a face)."""
    span = points.max(axis=0) - points.min(axis=0)
    if span.min() < MIN_SPAN_PX:
        raise DataError(
            f"{where}: degenerate points: the landmark box is {span[0]:g} x {span[1]:g} px "
            f"(expected a face at least {MIN_SPAN_PX:g} px wide and tall)"
        )
    try:
        scheme = scheme_for(len(points))
    except ValueError:  # a scheme of our own has no known eye corners; the box check above still applies
        scheme = None
    if scheme is not None:
        a, b = scheme.nme_indices
        centres = scheme.eye_centres(points.astype(np.float64))
        for name, distance in (
            (f"outer eye corners (points {a} and {b})", np.linalg.norm(points[a] - points[b])),
            ("eye centres", np.linalg.norm(centres[0] - centres[1])),
        ):
            if not distance >= MIN_SPAN_PX:
                raise DataError(
                    f"{where}: degenerate points: the {name} are {distance:g} px apart "
                    f"(expected at least {MIN_SPAN_PX:g} px)"
                )
    size = _image_size(image_path)
    if size is not None:
        width, height = size
        side = max(size)  # on both axes: cv2.imread turns EXIF-rotated photos, swapping width and height
        outside = np.flatnonzero(((points < -side) | (points > 2 * side - 1)).any(axis=1))
        if outside.size:
            x, y = points[outside[0]]
            raise DataError(
                f"{where}: point {outside[0]} ({x:g}, {y:g}) lies more than one image size outside the "
                f"{width}x{height} image {image_path.name} ({outside.size} such points)"
            )
    return points


class _PointCount:
    """Every sample of a dataset must have the same number of points (``num_points`` if given)."""

    def __init__(self, num_points: int | None):
        self.expected = num_points

    def check(self, points: np.ndarray, where: str) -> None:
        if self.expected is None:
            self.expected = len(points)
        elif len(points) != self.expected:
            raise DataError(f"{where}: expected {self.expected} points, got {len(points)}")


def _collect(items: Iterable, parse: Callable, name: Path, skip_invalid: bool) -> list[FaceRecord]:
    """Parse every item; raise on the first bad one, or skip bad ones and warn once with a count."""
    records, problems, total = [], [], 0
    for item in items:
        total += 1
        try:
            records.append(parse(item))
        except DataError as error:
            if not skip_invalid:
                raise
            problems.append(str(error))
    if problems:
        logger.warning("skipped %d of %d samples in %s: first problem: %s", len(problems), total, name, problems[0])
    if not records:
        detail = f" (first problem: {problems[0]})" if problems else ""
        raise DataError(f"{name}: no valid samples{detail}")
    return records


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the non-blank lines of a text file (a leading UTF-8 BOM is dropped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read annotation file: {error}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


# --- WFLW --------------------------------------------------------------------------------------------------


def wflw_list_path(root: Path, split: str) -> Path:
    """Where the published WFLW layout keeps the annotation list of a split."""
    if split not in ("train", "test"):
        raise DataError(f"WFLW split must be 'train' or 'test', got {split!r}")
    return Path(root) / WFLW_LIST_DIR / f"list_98pt_rect_attr_{split}.txt"


def read_wflw(
    root: Path,
    split: str = "train",
    images_root: Path | None = None,
    skip_invalid: bool = False,
) -> list[FaceRecord]:
    """Read a WFLW annotation list.

    ``root`` is the WFLW folder (holding ``WFLW_annotations/`` and ``WFLW_images/``) or a list file itself.
    Each line: 196 coordinates x0 y0 ... x97 y97, the box x_min y_min x_max y_max, 6 attribute flags (0/1)
    and the image path relative to ``WFLW_images/``. For a list file outside the published layout, images
    are looked up relative to ``images_root`` (default: the list file's folder).
    """
    root = Path(root)
    if root.is_file():
        list_path = root
        published_images = root.parent.parent.parent / "WFLW_images"
        default_images = published_images if published_images.is_dir() else root.parent
    else:
        list_path = wflw_list_path(root, split)
        default_images = root / "WFLW_images"
        if not list_path.is_file():
            raise DataError(f"{root}: WFLW annotation list not found: {list_path}")
    images_root = Path(images_root) if images_root is not None else default_images
    n_coords = 2 * WFLW_POINTS
    n_fields = n_coords + 4 + NUM_ATTRIBUTES + 1

    def parse(numbered_line: tuple[int, str]) -> FaceRecord:
        number, line = numbered_line
        where = f"{list_path}:{number}"
        fields = line.split()
        if len(fields) != n_fields:
            raise DataError(
                f"{where}: expected {n_fields} fields ({n_coords} coords, 4 box, "
                f"{NUM_ATTRIBUTES} attributes, 1 path), got {len(fields)}"
            )
        points = _numbers(fields[:n_coords], where, "coordinate").reshape(WFLW_POINTS, 2)
        box = _check_box(_numbers(fields[n_coords : n_coords + 4], where, "box"), where)
        flags = fields[n_coords + 4 : n_coords + 4 + NUM_ATTRIBUTES]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"{where}: attribute flags must be 0 or 1, got {' '.join(flags)}")
        image_path = _check_image(images_root / fields[-1], where)
        attributes = np.asarray([int(flag) for flag in flags], dtype=np.uint8)
        return FaceRecord(image_path, _check_points(points, image_path, where), box, attributes, where)

    return _collect(_text_lines(list_path), parse, list_path, skip_invalid)


def format_wflw_line(points: np.ndarray, box: np.ndarray, attributes: np.ndarray, rel_path: str) -> str:
    """One WFLW list line (the inverse of ``read_wflw``'s parsing), without the newline."""
    points = np.asarray(points, dtype=np.float64).reshape(-1)
    if points.size != 2 * WFLW_POINTS:
        raise ValueError(f"WFLW lines hold {WFLW_POINTS} points, got {points.size // 2}")
    coords = " ".join(f"{v:.6f}" for v in points)
    box_text = " ".join(str(int(round(v))) if float(v).is_integer() else f"{v:.6f}" for v in box)
    flags = " ".join(str(int(a)) for a in attributes)
    return f"{coords} {box_text} {flags} {rel_path}"


# --- 300-W .pts folders ------------------------------------------------------------------------------------


def _parse_pts(path: Path) -> np.ndarray:
    """The (N, 2) 0-based points of a 300-W ``.pts`` file (the file stores 1-based coordinates)."""
    lines = _text_lines(path)
    header = [line.strip() for _, line in lines[:3]]
    if len(header) < 3 or not header[1].startswith("n_points:") or header[2] != "{":
        raise DataError(f"{path}: expected a header 'version: 1', 'n_points: N', '{{'")
    try:
        n_points = int(header[1].split(":", 1)[1])
    except ValueError:
        raise DataError(f"{path}:{lines[1][0]}: n_points is not an integer: {header[1]!r}") from None
    body = lines[3:]
    if not body or body[-1][1].strip() != "}":
        raise DataError(f"{path}: missing closing '}}'")
    body = body[:-1]
    if len(body) != n_points:
        raise DataError(f"{path}: header says n_points: {n_points} but {len(body)} point lines follow")
    points = []
    for number, line in body:
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"{path}:{number}: expected 2 fields 'x y', got {len(fields)}")
        points.append(_numbers(fields, f"{path}:{number}", "coordinate"))
    return np.stack(points) - 1.0


def _image_beside(pts_path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = pts_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise DataError(f"{pts_path}: no image beside it ({', '.join(IMAGE_SUFFIXES)})")


def read_300w(folder: Path, num_points: int | None = None, skip_invalid: bool = False) -> list[FaceRecord]:
    """Read a folder of 300-W style ``NAME.pts`` + ``NAME.jpg|png|jpeg|ppm`` pairs, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: 300-W folder not found")
    count = _PointCount(num_points)

    def parse(pts_path: Path) -> FaceRecord:
        points = _parse_pts(pts_path)
        count.check(points, str(pts_path))
        image_path = _image_beside(pts_path)
        return FaceRecord(image_path, _check_points(points, image_path, str(pts_path)), source=str(pts_path))

    return _collect(sorted(folder.glob("*.pts")), parse, folder, skip_invalid)


# --- dlib imglab XML ---------------------------------------------------------------------------------------


def read_dlib_xml(path: Path, num_points: int | None = None, skip_invalid: bool = False) -> list[FaceRecord]:
    """Read a dlib imglab XML file (``<image file=...><box ...><part name='00' x=.. y=../>...``): one record per
    box, points in part-name order, image paths relative to the file. A photo with several faces gives several
    records with the same ``image_path``.

    The box's own ``top/left/width/height`` is left out (``box`` is None): it is a dlib HOG-style box, not the
    kind of box the other readers carry, and the landmark box is known from the points.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise DataError(f"{path}: cannot read dlib XML: {error}") from None
    count = _PointCount(num_points)
    faces = [
        (str(image.get("file")), number, box)
        for image in root.iter("image")
        for number, box in enumerate(image.iter("box"), start=1)
    ]

    def parse(face: tuple[str, int, ElementTree.Element]) -> FaceRecord:
        file_name, number, box = face
        where = f"{path}: image {file_name!r}, box {number}"
        parts = list(box.iter("part"))
        if not parts:
            raise DataError(f"{where}: no landmark <part> elements (a boxes-only file?)")
        order = _numbers([part.get("name") for part in parts], where, "part name")  # '00', '01', ...
        parts = [parts[i] for i in np.argsort(order, kind="stable")]
        points = _numbers([v for part in parts for v in (part.get("x"), part.get("y"))], where, "coordinate")
        points = points.reshape(-1, 2)
        count.check(points, where)
        image_path = _check_image(path.parent / file_name, where)
        return FaceRecord(image_path, _check_points(points, image_path, where), source=where)

    return _collect(faces, parse, path, skip_invalid)


# --- CSV / JSON tables -------------------------------------------------------------------------------------


def _read_csv(path: Path, count: _PointCount, skip_invalid: bool) -> list[FaceRecord]:
    try:
        # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = [(n, row) for n, row in enumerate(csv.reader(file), start=1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot read CSV: {error}") from None
    if not rows:
        raise DataError(f"{path}: empty CSV (expected a header 'image,x0,y0,...')")
    _, header = rows[0]
    header = [h.strip() for h in header]
    has_box = tuple(header[-4:]) == BOX_COLUMNS
    coord_columns = header[1 : len(header) - 4 if has_box else len(header)]
    k = len(coord_columns) // 2
    expected = ["image"] + [f"{axis}{i}" for i in range(k) for axis in "xy"]
    if header[0] != "image" or coord_columns != expected[1:] or k == 0:
        raise DataError(
            f"{path}:1: expected a header 'image,x0,y0,...,x{{K-1}},y{{K-1}}' with optional "
            f"{','.join(BOX_COLUMNS)}, got {','.join(header[:6])}..."
        )

    def parse(numbered_row: tuple[int, list[str]]) -> FaceRecord:
        number, row = numbered_row
        where = f"{path}:{number}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields (header), got {len(row)}")
        points = _numbers(row[1 : 1 + 2 * k], where, "coordinate").reshape(k, 2)
        count.check(points, where)
        box = _check_box(_numbers(row[-4:], where, "box"), where) if has_box else None
        image_path = _check_image(path.parent / row[0].strip(), where)
        return FaceRecord(image_path, _check_points(points, image_path, where), box, source=where)

    return _collect(rows[1:], parse, path, skip_invalid)


def _read_json(path: Path, count: _PointCount, skip_invalid: bool) -> list[FaceRecord]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot read JSON: {error}") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of faces, got {type(entries).__name__}")

    def parse(numbered_entry: tuple[int, object]) -> FaceRecord:
        number, entry = numbered_entry
        where = f"{path}: entry {number}"
        if not isinstance(entry, dict) or "image" not in entry or "points" not in entry:
            raise DataError(f"{where}: expected an object with 'image' and 'points'")
        points = entry["points"]
        if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
            raise DataError(f"{where}: 'points' must be a list of [x, y] pairs")
        points = _numbers([v for p in points for v in p], where, "coordinate").reshape(-1, 2)
        count.check(points, where)
        box = entry.get("box")
        if box is not None:
            if not isinstance(box, list) or len(box) != 4:
                raise DataError(f"{where}: 'box' must be [x_min, y_min, x_max, y_max]")
            box = _check_box(_numbers(box, where, "box"), where)
        image_path = _check_image(path.parent / str(entry["image"]), where)
        return FaceRecord(image_path, _check_points(points, image_path, where), box, source=where)

    return _collect(enumerate(entries), parse, path, skip_invalid)


def read_table(
    path: Path, num_points: int | None = None, skip_invalid: bool = False, fmt: str | None = None
) -> list[FaceRecord]:
    """Read the project's CSV or JSON annotation table (format in the module docstring).

    ``fmt`` ("csv" or "json") decides how the file is read; without it the suffix does. A .csv or .json file
    given as the other format is refused rather than read as what its name says.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None:
        if suffix not in TABLE_FORMATS:
            raise DataError(f"{path}: expected a .csv or .json annotation table")
        fmt = suffix
    elif fmt not in TABLE_FORMATS:
        raise DataError(f"{path}: table format must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
    elif suffix in TABLE_FORMATS and suffix != fmt:
        raise DataError(f"{path}: data format is {fmt} but the file is a .{suffix} file")
    count = _PointCount(num_points)
    return _read_csv(path, count, skip_invalid) if fmt == "csv" else _read_json(path, count, skip_invalid)


# --- splits ------------------------------------------------------------------------------------------------


def split_records(
    records: list[FaceRecord], val_fraction: float, seed: int
) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """A fixed-seed random (train, val) split; both keep the records' original order."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(records) * val_fraction))
    if val_fraction > 0 and len(records) >= 2:
        n_val = min(max(n_val, 1), len(records) - 1)
    order = np.random.default_rng(seed).permutation(len(records))
    is_val = np.zeros(len(records), dtype=bool)
    is_val[order[:n_val]] = True
    train = [r for r, v in zip(records, is_val, strict=True) if not v]
    val = [r for r, v in zip(records, is_val, strict=True) if v]
    return train, val
