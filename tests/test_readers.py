"""Annotation readers: WFLW lists, 300-W .pts folders, CSV/JSON tables, and every bad-input case."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmark.data.dataset import build_records
from landmark.data.readers import (
    WFLW_LIST_DIR,
    format_wflw_line,
    read_300w,
    read_dlib_xml,
    read_table,
    read_wflw,
    split_records,
)
from landmark.errors import DataError

RNG = np.random.default_rng(7)


# --- WFLW ----------------------------------------------------------------------------------------------------


def make_wflw(root: Path, n: int = 3, split: str = "train") -> tuple[Path, list[np.ndarray]]:
    """A WFLW folder in the published layout with ``n`` faces; returns (list file, points per line)."""
    (root / "WFLW_images" / "0--Parade").mkdir(parents=True, exist_ok=True)
    (root / WFLW_LIST_DIR).mkdir(parents=True, exist_ok=True)
    lines, all_points = [], []
    for i in range(n):
        rel = f"0--Parade/img_{i}.jpg"
        (root / "WFLW_images" / rel).write_bytes(b"not decoded by the reader")
        points = RNG.uniform(10, 300, (98, 2)).astype(np.float32)
        box = np.array([5, 6, 310, 320])
        attributes = np.array([i % 2, 0, 1, 0, 0, 1])
        lines.append(format_wflw_line(points, box, attributes, rel))
        all_points.append(points)
    list_path = root / WFLW_LIST_DIR / f"list_98pt_rect_attr_{split}.txt"
    list_path.write_text("\n".join(lines) + "\n")
    return list_path, all_points


def replace_line(path: Path, number: int, transform) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = transform(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


def set_field(index: int, value: str):
    def transform(line: str) -> str:
        fields = line.split()
        fields[index] = value
        return " ".join(fields)

    return transform


def test_wflw_line_round_trip(tmp_path):
    list_path, points = make_wflw(tmp_path, n=3)
    records = read_wflw(tmp_path, "train")
    assert len(records) == 3
    for record, expected in zip(records, points, strict=True):
        np.testing.assert_allclose(record.points, expected, atol=1e-5)
        assert record.points.dtype == np.float32 and record.points.shape == (98, 2)
    np.testing.assert_array_equal(records[1].box, [5, 6, 310, 320])
    np.testing.assert_array_equal(records[1].attributes, [1, 0, 1, 0, 0, 1])
    assert records[2].image_path == tmp_path / "WFLW_images" / "0--Parade" / "img_2.jpg"
    assert records[2].source.endswith("list_98pt_rect_attr_train.txt:3")
    # A direct path to the list file finds the images of the published layout too.
    direct = read_wflw(list_path)
    assert [r.image_path for r in direct] == [r.image_path for r in records]


def test_wflw_test_split_and_missing_list(tmp_path):
    make_wflw(tmp_path, n=2, split="test")
    assert len(read_wflw(tmp_path, "test")) == 2
    with pytest.raises(DataError, match="list_98pt_rect_attr_train.txt"):
        read_wflw(tmp_path, "train")


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda line: " ".join(line.split()[:12]), r"train.txt:2: expected 207 fields \(196 coords.*got 12"),
        (set_field(5, "abc"), r"train.txt:2: coordinate value 5 is not a number: 'abc'"),
        (set_field(7, "nan"), r"train.txt:2: coordinate value 7 is not finite"),
        (set_field(3, "inf"), r"train.txt:2: coordinate value 3 is not finite"),
        (set_field(197, "x"), r"train.txt:2: box value 1 is not a number"),
        (set_field(200, "2"), r"train.txt:2: attribute flags must be 0 or 1"),
        (set_field(206, "0--Parade/nope.jpg"), r"train.txt:2: image not found: .*nope.jpg"),
        (set_field(198, "1"), r"train.txt:2: face box .* x_max > x_min"),
    ],
)
def test_wflw_bad_line(tmp_path, transform, message):
    list_path, _ = make_wflw(tmp_path, n=3)
    replace_line(list_path, 2, transform)
    with pytest.raises(DataError, match=message):
        read_wflw(tmp_path, "train")


def test_wflw_skip_invalid_warns_once_with_count(tmp_path, caplog):
    list_path, points = make_wflw(tmp_path, n=5)
    replace_line(list_path, 1, set_field(0, "abc"))
    replace_line(list_path, 3, lambda line: "1 2 3")
    replace_line(list_path, 4, set_field(9, "nan"))
    with caplog.at_level(logging.WARNING, logger="landmark.data.readers"):
        records = read_wflw(tmp_path, "train", skip_invalid=True)
    np.testing.assert_allclose([r.points for r in records], [points[1], points[4]], atol=1e-5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 of 5 samples" in warnings[0].getMessage()
    assert "train.txt:1: coordinate value 0 is not a number" in warnings[0].getMessage()


def test_wflw_empty_or_all_invalid(tmp_path):
    list_path, _ = make_wflw(tmp_path, n=2)
    list_path.write_text("\n\n")
    with pytest.raises(DataError, match="no valid samples"):
        read_wflw(tmp_path, "train")
    list_path.write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"no valid samples \(first problem: .*expected 207 fields"):
        read_wflw(tmp_path, "train", skip_invalid=True)


def test_format_wflw_line_rejects_wrong_point_count():
    with pytest.raises(ValueError, match="98 points"):
        format_wflw_line(np.zeros((68, 2)), [0, 0, 1, 1], [0] * 6, "a.jpg")


# --- 300-W -----------------------------------------------------------------------------------------------------


def write_pts(path: Path, points_one_based: np.ndarray, n_points: int | None = None, image: bool = True):
    n = len(points_one_based) if n_points is None else n_points
    body = "\n".join(f"{x} {y}" for x, y in points_one_based)
    path.write_text(f"version: 1\nn_points:  {n}\n{{\n{body}\n}}\n")
    if image:
        path.with_suffix(".jpg").write_bytes(b"jpeg")


def test_300w_subtracts_one_and_sorts(tmp_path):
    points = [RNG.uniform(1, 100, (68, 2)) for _ in range(3)]
    for name, p in zip(["b", "a", "c"], points, strict=True):
        write_pts(tmp_path / f"{name}.pts", p)
    (tmp_path / "c.jpg").unlink()
    (tmp_path / "c.png").write_bytes(b"png")
    records = read_300w(tmp_path, num_points=68)
    assert [r.image_path.name for r in records] == ["a.jpg", "b.jpg", "c.png"]
    np.testing.assert_allclose(records[0].points, points[1] - 1, atol=1e-4)
    assert records[0].box is None and not records[0].attributes.any()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: write_pts(d / "b.pts", np.ones((68, 2)), image=False), r"b.pts: no image beside it"),
        (lambda d: write_pts(d / "b.pts", np.ones((67, 2))), r"b.pts: expected 68 points, got 67"),
        (lambda d: write_pts(d / "b.pts", np.ones((68, 2)), n_points=70), r"n_points: 70 but 68 point lines"),
        (lambda d: write_pts(d / "b.pts", np.full((68, 2), np.nan)), r"b.pts:4: coordinate value 0 is not finite"),
        (lambda d: (d / "b.pts").write_text("68 points\n1 2\n"), r"b.pts: expected a header"),
    ],
)
def test_300w_bad_file(tmp_path, setup, message):
    write_pts(tmp_path / "a.pts", RNG.uniform(1, 100, (68, 2)))
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        read_300w(tmp_path)


def test_300w_non_number_and_num_points(tmp_path):
    bad = RNG.uniform(1, 100, (68, 2)).astype(str)
    bad[10, 1] = "1,5"
    write_pts(tmp_path / "a.pts", bad)
    with pytest.raises(DataError, match=r"a.pts:14: coordinate value 1 is not a number: '1,5'"):
        read_300w(tmp_path)
    write_pts(tmp_path / "a.pts", RNG.uniform(1, 100, (68, 2)))
    with pytest.raises(DataError, match=r"a.pts: expected 98 points, got 68"):
        read_300w(tmp_path, num_points=98)


def test_300w_skip_invalid_and_empty(tmp_path, caplog):
    with pytest.raises(DataError, match="no valid samples"):
        read_300w(tmp_path)
    write_pts(tmp_path / "a.pts", RNG.uniform(1, 100, (68, 2)))
    write_pts(tmp_path / "b.pts", RNG.uniform(1, 100, (68, 2)), image=False)
    write_pts(tmp_path / "c.pts", RNG.uniform(1, 100, (5, 2)))
    with caplog.at_level(logging.WARNING, logger="landmark.data.readers"):
        records = read_300w(tmp_path, skip_invalid=True)
    assert [r.image_path.name for r in records] == ["a.jpg"]
    assert [r.getMessage()[:25] for r in caplog.records] == ["skipped 2 of 3 samples in"]


def test_300w_real_folder(shared_data):
    records = read_300w(shared_data / "faces300w" / "train", num_points=68)
    assert len(records) == 1207
    all_points = np.stack([r.points for r in records])
    assert np.isfinite(all_points).all() and all_points.min() > -100


def test_300w_degenerate_points_are_a_data_error_or_skipped(tmp_path, caplog):
    """68 identical points (or both outer eye corners on one spot) leave NME a zero normaliser: refused when read,
    naming the file, instead of a ValueError in eval, training or INT8 calibration."""
    write_pts(tmp_path / "a.pts", RNG.uniform(1, 100, (68, 2)))
    write_pts(tmp_path / "b.pts", np.full((68, 2), 50.0))
    with pytest.raises(DataError, match=r"b.pts: degenerate points: the landmark box is 0 x 0 px") as info:
        read_300w(tmp_path)
    assert "\n" not in str(info.value)
    with caplog.at_level(logging.WARNING, logger="landmark.data.readers"):
        assert [r.image_path.name for r in read_300w(tmp_path, skip_invalid=True)] == ["a.jpg"]
    assert "skipped 1 of 2 samples" in caplog.text
    corners = RNG.uniform(1, 100, (68, 2))
    corners[45] = corners[36]
    write_pts(tmp_path / "b.pts", corners)
    with pytest.raises(DataError, match=r"b.pts: degenerate points: the outer eye corners \(points 36 and 45\)"):
        read_300w(tmp_path)


# --- dlib imglab XML -------------------------------------------------------------------------------------------


def write_dlib_xml(path: Path, faces: dict[str, list[np.ndarray]]) -> None:
    """An imglab XML file: image name -> the (K, 2) points of each of its faces (parts written last to first)."""
    images = []
    for name, face_points in faces.items():
        boxes = []
        for points in face_points:
            parts = [f"<part name='{i:02d}' x='{x:g}' y='{y:g}'/>" for i, (x, y) in enumerate(points)][::-1]
            boxes.append(f"<box top='0' left='0' width='10' height='10'>{''.join(parts)}</box>")
        images.append(f"<image file='{name}'>{''.join(boxes)}</image>")
    path.write_text(f"<?xml version='1.0'?><dataset><images>{''.join(images)}</images></dataset>")


def test_dlib_xml_gives_one_record_per_box_in_part_order(tmp_path):
    faces = [np.round(RNG.uniform(1, 100, (68, 2))) for _ in range(3)]
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"jpeg")
    write_dlib_xml(tmp_path / "faces.xml", {"a.jpg": faces[:2], "b.jpg": faces[2:]})
    records = read_dlib_xml(tmp_path / "faces.xml", num_points=68)
    assert [r.image_path.name for r in records] == ["a.jpg", "a.jpg", "b.jpg"]
    for record, points in zip(records, faces, strict=True):
        np.testing.assert_array_equal(record.points, points)  # 0-based already: nothing subtracted
        assert record.box is None
    assert records[1].source.endswith("image 'a.jpg', box 2")


def test_dlib_xml_bad_files_are_one_data_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "boxes.xml").write_text(
        "<dataset><images><image file='a.jpg'><box top='1'/></image></images></dataset>"
    )
    with pytest.raises(DataError, match="image 'a.jpg', box 1: no landmark <part> elements"):
        read_dlib_xml(tmp_path / "boxes.xml")
    (tmp_path / "broken.xml").write_text("<dataset><images>")
    with pytest.raises(DataError, match="broken.xml: cannot read dlib XML"):
        read_dlib_xml(tmp_path / "broken.xml")
    write_dlib_xml(tmp_path / "missing.xml", {"gone.jpg": [RNG.uniform(1, 100, (68, 2))]})
    with pytest.raises(DataError, match="image not found"):
        read_dlib_xml(tmp_path / "missing.xml")


def test_dlib_xml_real_example_faces(shared_data):
    folder = shared_data / "real_faces" / "dlib_examples_faces"
    records = [r for name in ("training", "testing") for r in read_dlib_xml(folder / f"{name}_with_face_landmarks.xml")]
    assert len(records) == 43 and len({r.image_path for r in records}) == 9
    assert all(r.points.shape == (68, 2) for r in records)


# --- CSV / JSON ------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list], k: int = 3, box: bool = False) -> None:
    header = ["image"] + [f"{axis}{i}" for i in range(k) for axis in "xy"]
    if box:
        header += ["box_x_min", "box_y_min", "box_x_max", "box_y_max"]
    path.write_text("\n".join(",".join(str(v) for v in row) for row in [header, *rows]) + "\n")


def test_csv_reads_points_and_optional_box(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").touch()
    write_csv(tmp_path / "faces.csv", [["img/a.jpg", 1, 2, 3, 4, 5.5, 6, 0, 1, 10, 12]], box=True)
    (record,) = read_table(tmp_path / "faces.csv")
    np.testing.assert_array_equal(record.points, [[1, 2], [3, 4], [5.5, 6]])
    np.testing.assert_array_equal(record.box, [0, 1, 10, 12])
    assert record.image_path == tmp_path / "img" / "a.jpg" and record.source.endswith("faces.csv:2")
    write_csv(tmp_path / "nobox.csv", [["img/a.jpg", 1, 2, 3, 4, 5, 6]])
    assert read_table(tmp_path / "nobox.csv")[0].box is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["a.jpg", 1, 2, 3, 4, 5], r"faces.csv:3: expected 7 fields \(header\), got 6"),
        (["a.jpg", 1, 2, "x", 4, 5, 6], r"faces.csv:3: coordinate value 2 is not a number: 'x'"),
        (["a.jpg", 1, 2, "nan", 4, 5, 6], r"faces.csv:3: coordinate value 2 is not finite"),
        (["missing.jpg", 1, 2, 3, 4, 5, 6], r"faces.csv:3: image not found: .*missing.jpg"),
    ],
)
def test_csv_bad_row(tmp_path, row, message):
    (tmp_path / "a.jpg").touch()
    write_csv(tmp_path / "faces.csv", [["a.jpg", 1, 2, 3, 4, 5, 6], row])
    with pytest.raises(DataError, match=message):
        read_table(tmp_path / "faces.csv")


def test_csv_bad_header_point_count_and_skip(tmp_path, caplog):
    (tmp_path / "a.jpg").touch()
    (tmp_path / "faces.csv").write_text("img,x0,y0\na.jpg,1,2\n")
    with pytest.raises(DataError, match=r"faces.csv:1: expected a header 'image,x0,y0"):
        read_table(tmp_path / "faces.csv")
    write_csv(tmp_path / "faces.csv", [["a.jpg", 1, 2, 3, 4, 5, 6]])
    with pytest.raises(DataError, match=r"faces.csv:2: expected 68 points, got 3"):
        read_table(tmp_path / "faces.csv", num_points=68)
    write_csv(tmp_path / "faces.csv", [["a.jpg", 1, 2, 3, 4, 5, 6], ["a.jpg", 1], ["b.jpg", 1, 2, 3, 4, 5, 6]])
    with caplog.at_level(logging.WARNING, logger="landmark.data.readers"):
        assert len(read_table(tmp_path / "faces.csv", skip_invalid=True)) == 1
    assert "skipped 2 of 3 samples" in caplog.text
    with pytest.raises(DataError, match=r"expected a .csv or .json"):
        read_table(tmp_path / "a.jpg")


def test_json_reads_and_validates(tmp_path):
    (tmp_path / "a.jpg").touch()
    good = {"image": "a.jpg", "points": [[1, 2], [3, 4]], "box": [0, 0, 5, 5]}
    (tmp_path / "faces.json").write_text(json.dumps([good, {"image": "a.jpg", "points": [[7, 8], [9, 10]]}]))
    records = read_table(tmp_path / "faces.json")
    np.testing.assert_array_equal(records[1].points, [[7, 8], [9, 10]])
    np.testing.assert_array_equal(records[0].box, [0, 0, 5, 5])
    assert records[1].box is None

    cases = [
        ({"image": "a.jpg", "points": [[1, 2], [3, 4], [5, 6]]}, r"faces.json: entry 1: expected 2 points, got 3"),
        ({"image": "a.jpg", "points": [[1, "y"], [3, 4]]}, r"entry 1: coordinate value 1 is not a number"),
        ({"image": "a.jpg", "points": [[1, float("nan")], [3, 4]]}, r"entry 1: coordinate value 1 is not finite"),
        ({"image": "b.jpg", "points": [[1, 2], [3, 4]]}, r"entry 1: image not found"),
        ({"image": "a.jpg", "points": [1, 2, 3, 4]}, r"entry 1: 'points' must be a list of \[x, y\] pairs"),
        ({"points": [[1, 2], [3, 4]]}, r"entry 1: expected an object with 'image' and 'points'"),
    ]
    for bad, message in cases:
        (tmp_path / "faces.json").write_text(json.dumps([good, bad]))
        with pytest.raises(DataError, match=message):
            read_table(tmp_path / "faces.json")
    (tmp_path / "faces.json").write_text("{not json")
    with pytest.raises(DataError, match="faces.json: cannot read JSON"):
        read_table(tmp_path / "faces.json")


def test_json_booleans_are_not_numbers(tmp_path):
    (tmp_path / "a.jpg").touch()
    (tmp_path / "faces.json").write_text(json.dumps([{"image": "a.jpg", "points": [[True, False]] * 68}]))
    with pytest.raises(DataError, match=r"faces.json: entry 0: coordinate value 0 is not a number: True"):
        read_table(tmp_path / "faces.json")


def test_points_far_outside_the_image_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((60, 80, 3), np.uint8))  # 80 x 60: the size is read, not guessed
    points = RNG.uniform((-70, -50), (150, 110), (68, 2))  # outside the frame but within one image size of it
    (tmp_path / "faces.json").write_text(json.dumps([{"image": "a.png", "points": points.tolist()}]))
    assert len(read_table(tmp_path / "faces.json")) == 1
    (tmp_path / "faces.json").write_text(json.dumps([{"image": "a.png", "points": (points + 1e7).tolist()}]))
    with pytest.raises(DataError, match=r"faces.json: entry 0: point 0 .* more than one image size outside the 80x60"):
        read_table(tmp_path / "faces.json")


def test_data_format_decides_and_a_mismatching_suffix_is_refused(tmp_path):
    (tmp_path / "a.jpg").touch()
    write_csv(tmp_path / "faces.csv", [["a.jpg", 1, 2, 3, 4, 5, 6]])
    with pytest.raises(DataError, match=r"faces.csv: data format is json but the file is a .csv file"):
        read_table(tmp_path / "faces.csv", fmt="json")
    assert len(build_records({"format": "csv", "root": str(tmp_path / "faces.csv")}, "test")) == 1
    with pytest.raises(DataError, match="data format is json"):
        build_records({"format": "json", "root": str(tmp_path / "faces.csv")}, "test")
    (tmp_path / "faces.txt").write_text(json.dumps([{"image": "a.jpg", "points": [[1, 2], [3, 4]]}]))
    assert len(read_table(tmp_path / "faces.txt", fmt="json")) == 1  # a neutral suffix: the format decides


def test_csv_with_a_byte_order_mark(tmp_path):
    (tmp_path / "a.jpg").touch()
    write_csv(tmp_path / "faces.csv", [["a.jpg", 1, 2, 3, 4, 5, 6]])
    (tmp_path / "faces.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "faces.csv").read_bytes())  # Excel's UTF-8
    np.testing.assert_array_equal(read_table(tmp_path / "faces.csv")[0].points, [[1, 2], [3, 4], [5, 6]])


# --- split -----------------------------------------------------------------------------------------------------


def test_split_records_is_fixed_and_disjoint(tmp_path):
    records = list(range(100))  # any sequence works; the split only permutes positions
    train, val = split_records(records, 0.2, seed=3)
    assert len(val) == 20 and sorted(train + val) == records and not set(train) & set(val)
    assert split_records(records, 0.2, seed=3) == (train, val)
    assert split_records(records, 0.2, seed=4)[1] != val
    with pytest.raises(DataError, match="val_fraction"):
        split_records(records, 1.0, seed=0)
