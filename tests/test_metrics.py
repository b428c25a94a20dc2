"""Landmark metrics against values worked out by hand."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from landmark.data.schemes import IBUG_68, WFLW_98, EyeIndices, Scheme
from landmark.train import metrics

# A three-point scheme so errors can be worked out on paper: the "eye corners" are points 0 and 1.
TOY = Scheme(
    name="toy3",
    num_points=3,
    flip_permutation=(1, 0, 2),
    nme_indices=(0, 1),
    left_eye=EyeIndices(0, 0, ()),
    right_eye=EyeIndices(1, 1, ()),
    mouth_inner=EyeIndices(2, 2, ()),
    pupils=None,
    to_68=None,
)

# Face 0: eye corners (0,0)-(4,0) -> inter-ocular 4; landmark box 4 x 3.
# Face 1: eye corners (10,10)-(20,10) -> inter-ocular 10; landmark box 10 x 10.
GT = np.array(
    [
        [[0.0, 0.0], [4.0, 0.0], [2.0, 3.0]],
        [[10.0, 10.0], [20.0, 10.0], [15.0, 20.0]],
    ]
)
# Errors face 0: (3,4) -> 5, exact -> 0, (0,1) -> 1; mean 2 -> NME 2/4 = 0.5.
# Errors face 1: (0.6,0.8) -> 1, exact -> 0, (0,-2) -> 2; mean 1 -> NME 1/10 = 0.1.
PRED = GT + np.array(
    [
        [[3.0, 4.0], [0.0, 0.0], [0.0, 1.0]],
        [[0.6, 0.8], [0.0, 0.0], [0.0, -2.0]],
    ]
)

# NMEs chosen off the 0.01 grid so the trapezoid rule is exact on it:
# CED at x = 0, .01, ..., .1 is 1/4 (x < .025), 2/4 (x < .055), then 3/4 (0.2 never counts).
SAMPLE_NME = np.array([0.0, 0.025, 0.055, 0.2])


def test_inter_ocular_nme_by_hand():
    np.testing.assert_allclose(metrics.normalisers(GT, TOY), [4.0, 10.0])
    np.testing.assert_allclose(metrics.per_face_nme(PRED, GT, TOY), [0.5, 0.1])


def test_per_landmark_error_by_hand():
    # point 0: (5/4 + 1/10) / 2 = 0.675; point 1: 0; point 2: (1/4 + 2/10) / 2 = 0.225
    np.testing.assert_allclose(metrics.per_landmark_error(PRED, GT, TOY), [0.675, 0.0, 0.225])


def test_box_normaliser_from_landmarks_and_from_given_boxes():
    # face 0 box 4 x 3 -> sqrt(12); face 1 box 10 x 10 -> 10
    np.testing.assert_allclose(metrics.normalisers(GT, TOY, "box"), [math.sqrt(12.0), 10.0])
    np.testing.assert_allclose(metrics.per_face_nme(PRED, GT, TOY, "box"), [2.0 / math.sqrt(12.0), 0.1])
    boxes = np.array([[0.0, 0.0, 8.0, 2.0], [0.0, 0.0, 5.0, 20.0]])  # sqrt(16) = 4, sqrt(100) = 10
    np.testing.assert_allclose(metrics.normalisers(GT, TOY, "box", boxes=boxes), [4.0, 10.0])


def _ibug_face() -> np.ndarray:
    points = np.zeros((68, 2))
    # Image-left eye 36-41 (36 outer corner): centroid (30, 50). Right eye 42-47 (45 outer): centroid (70, 50).
    left = [(20, 50), (25, 45), (35, 45), (40, 50), (35, 55), (25, 55)]
    points[36:42] = left
    points[42:48] = [(x + 40, y) for x, y in left]
    points[:36] = np.linspace(0, 100, 36)[:, None]  # something non-degenerate elsewhere
    points[48:] = np.linspace(0, 100, 20)[:, None] + [0, 50]
    return points[None]


def test_inter_pupil_on_68_points_uses_eye_contour_centres():
    gt = _ibug_face()
    pred = gt + [3.0, 4.0]  # every point off by 5
    # eye-contour centres (30,50) and (70,50) -> 40; outer corners 36 (20,50) and 45 (80,50) -> 60
    np.testing.assert_allclose(metrics.normalisers(gt, IBUG_68, "inter_pupil"), [40.0])
    np.testing.assert_allclose(metrics.normalisers(gt, IBUG_68, "inter_ocular"), [60.0])
    np.testing.assert_allclose(metrics.per_face_nme(pred, gt, IBUG_68, "inter_pupil"), [5.0 / 40.0])
    np.testing.assert_allclose(metrics.per_face_nme(pred, gt, IBUG_68), [5.0 / 60.0])


def test_inter_pupil_on_98_points_uses_annotated_pupils():
    gt = np.tile(np.arange(98.0)[:, None], (1, 2))[None]  # distinct points on a diagonal
    gt[0, 96] = [10.0, 0.0]
    gt[0, 97] = [10.0, 25.0]
    np.testing.assert_allclose(metrics.normalisers(gt, WFLW_98, "inter_pupil"), [25.0])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown NME normaliser"):
        metrics.normalisers(GT, TOY, "diagonal")
    with pytest.raises(ValueError, match=r"\(N, 3, 2\)"):
        metrics.per_face_nme(PRED[:, :2], GT[:, :2], TOY)
    degenerate = GT.copy()
    degenerate[1, 1] = degenerate[1, 0]  # both eye corners on one spot
    with pytest.raises(ValueError, match="face index 1"):
        metrics.per_face_nme(PRED, degenerate, TOY)


def test_failure_rate_and_auc_by_hand():
    assert metrics.failure_rate(SAMPLE_NME) == 0.25
    # trapezoids on the 0.01 grid: .25 + .25 + .375 + .5 + .5 + .625 + 4 * .75 = 5.5 -> 5.5 * .01 / .1 = 0.55
    assert metrics.auc(SAMPLE_NME, step=0.01) == pytest.approx(0.55, abs=1e-12)
    # the default fine grid converges to the exact area mean(clip(1 - nme / 0.1, 0, 1)) = 0.55
    assert metrics.auc(SAMPLE_NME) == pytest.approx(0.55, abs=1e-3)
    x, y = metrics.ced_curve(SAMPLE_NME, 0.1, 0.01)
    np.testing.assert_allclose(x, np.arange(11) * 0.01, atol=1e-15)
    np.testing.assert_allclose(y, [0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75])


def test_fr_auc_edges():
    perfect = np.zeros(5)
    assert metrics.failure_rate(perfect) == 0.0
    assert metrics.auc(perfect) == pytest.approx(1.0, abs=1e-12)
    failed = np.array([0.2, 0.5, 0.1001])
    assert metrics.failure_rate(failed) == 1.0
    assert metrics.auc(failed) == 0.0
    # Exactly at the threshold: not a failure; the CED only reaches 1 at the last grid point, so the area
    # is one half-trapezoid: 0.5 * 1e-4 / 0.1 = 5e-4.
    at_threshold = np.array([0.1])
    assert metrics.failure_rate(at_threshold) == 0.0
    assert metrics.auc(at_threshold) == pytest.approx(5e-4, rel=1e-9)


def test_summarise_keys_and_values():
    summary = metrics.summarise(SAMPLE_NME)
    assert set(summary) == {"nme_mean", "nme_median", "fr10", "auc10", "n"}
    assert summary["nme_mean"] == pytest.approx(0.07)  # 0.28 / 4
    assert summary["nme_median"] == pytest.approx(0.04)  # (0.025 + 0.055) / 2
    assert summary["fr10"] == 0.25
    assert summary["auc10"] == pytest.approx(0.55, abs=1e-3)
    assert summary["n"] == 4
    # another threshold is labelled as such: 0.055 and 0.2 exceed 0.05
    assert metrics.summarise(SAMPLE_NME, threshold=0.05)["fr5"] == 0.5


def test_summarise_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="empty"):
        metrics.summarise(np.array([]))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.summarise(np.array([0.1, np.nan]))


def test_attribute_subsets_skip_empty_ones():
    attributes = np.zeros((4, 6), dtype=int)
    attributes[[0, 3], 0] = 1  # pose: NMEs 0.0 and 0.2
    attributes[1, 5] = 1  # blur: NME 0.025
    subsets = metrics.attribute_subsets(SAMPLE_NME, attributes)
    assert set(subsets) == {"pose", "blur"}
    assert subsets["pose"]["n"] == 2
    assert subsets["pose"]["nme_mean"] == pytest.approx(0.1)
    assert subsets["pose"]["fr10"] == 0.5
    assert subsets["blur"]["nme_mean"] == pytest.approx(0.025)
    assert subsets["blur"]["fr10"] == 0.0
    with pytest.raises(ValueError, match="attributes must have shape"):
        metrics.attribute_subsets(SAMPLE_NME, attributes[:, :5])


def test_source_subsets_group_300w_faces_by_file_name_prefix():
    nme = np.array([0.02, 0.04, 0.06, 0.12, 0.5])
    names = ["helen_1.jpg", "HELEN_2.png", "afw_3.jpg", "ibug_4.jpg", "myface.jpg"]  # the last has no source
    subsets = metrics.source_subsets(nme, names)
    assert list(subsets) == ["afw", "helen", "ibug"]
    assert subsets["helen"]["n"] == 2 and subsets["helen"]["nme_mean"] == pytest.approx(0.03)
    assert subsets["ibug"]["fr10"] == 1.0 and subsets["afw"]["fr10"] == 0.0
    assert metrics.source_subsets(nme[:1], ["face.jpg"]) == {}
    with pytest.raises(ValueError, match="2 names for 5 faces"):
        metrics.source_subsets(nme, names[:2])


def test_plot_ced_writes_png_atomically(tmp_path):
    path = tmp_path / "ced.png"
    path.write_bytes(b"old")
    metrics.plot_ced({"model": SAMPLE_NME, "baseline": SAMPLE_NME * 2}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["ced.png"]  # no temporary file left behind


def test_region_errors_average_their_points_and_map_wflw_onto_the_68_layout():
    per_landmark = np.zeros(68)
    per_landmark[0:17] = 0.08  # jaw
    per_landmark[36:48] = 0.02  # eyes
    regions = metrics.region_errors(per_landmark, IBUG_68)
    assert regions == pytest.approx({"jaw": 0.08, "brows": 0.0, "nose": 0.0, "eyes": 0.02, "mouth": 0.0})
    wflw = np.zeros(98)
    wflw[list(WFLW_98.to_68[36:48])] = 0.03  # the WFLW points that stand for the 68-point eyes
    assert metrics.region_errors(wflw, WFLW_98)["eyes"] == pytest.approx(0.03)
    assert metrics.region_errors(np.zeros(3), TOY) == {}  # a scheme without a 68-point mapping has no regions
