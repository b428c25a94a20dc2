"""Backbones from YAML and the PFLD network: shapes, strides, parameter counts and config errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from landmark.errors import ConfigError
from landmark.models.backbone import build_classifier
from landmark.models.pfld import LocalRefiner, build_auxiliary, build_pfld, load_model_config
from landmark.models.summary import count_parameters, summarise_model

MODELS = Path(__file__).resolve().parent.parent / "configs" / "models"
PFLD_CONFIGS = ["pfld.yaml", "pfld_v2.yaml"]


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_mobilenet_v1_imagenet_layout() -> None:
    model = build_classifier(MODELS / "mobilenet_v1.yaml", num_classes=1000)
    assert 4.2e6 <= count_parameters(model) <= 4.25e6  # the paper's 4.2 M
    features = model.backbone(torch.zeros(1, 3, 224, 224))
    assert features[32].shape == (1, 1024, 7, 7)
    # the depthwise conv of every stride-2 pair really downsamples: 5 stride-2 stages after the stem
    assert sum(spec.stride == 2 for spec in model.backbone.specs) == 5


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_mobilenet_v2_matches_torchvision(width: float) -> None:
    ours = build_classifier(MODELS / "mobilenet_v2.yaml", width=width)
    reference = torchvision.models.mobilenet_v2(width_mult=width)
    assert count_parameters(ours) == count_parameters(reference)


@pytest.mark.parametrize("config", PFLD_CONFIGS)
@pytest.mark.parametrize("width", [1.0, 0.25])
@pytest.mark.parametrize("num_points", [98, 68])
def test_pfld_shapes(config: str, width: float, num_points: int) -> None:
    cfg = load_model_config(MODELS / config, num_points=num_points, width=width)
    model = build_pfld(cfg).eval()
    x = torch.randn(2, 3, 112, 112)
    landmarks, coarse, aux_features = model.forward_with_features(x)
    assert coarse is None  # no refiners configured
    assert landmarks.shape == (2, num_points, 2)
    assert aux_features.shape[-2:] == (28, 28)
    assert model.backbone(x)[8].shape[-2:] == (14, 14)
    assert build_auxiliary(cfg, model)(aux_features).shape == (2, 3)
    shapes = {s["stage"]: s["shape"] for s in summarise_model(model)["stages"]}
    assert shapes["head.s2"][1:] == [7, 7] and shapes["head.s3"][1:] == [1, 1]
    assert shapes["head.fc"] == [2 * num_points]


@pytest.mark.parametrize("config", PFLD_CONFIGS)
def test_stride_two_stages(config: str) -> None:
    # stem + two more stride-2 layers reach stride 8 (14x14 at 112); the head adds the fourth (7x7)
    model = build_pfld(load_model_config(MODELS / config))
    assert sum(spec.stride == 2 for spec in model.backbone.specs) == 3
    assert model.backbone.layer_strides[-1] == 8


def test_inference_model_has_no_auxiliary_weights() -> None:
    cfg = load_model_config(MODELS / "pfld.yaml")
    model = build_pfld(cfg)
    aux = build_auxiliary(cfg, model)
    model_params = {id(p) for p in model.parameters()}
    assert not model_params & {id(p) for p in aux.parameters()}
    assert not any("aux" in name for name in model.state_dict())


def test_input_size_is_configurable() -> None:
    model = build_pfld(load_model_config(MODELS / "pfld.yaml", input_size=128)).eval()
    assert model(torch.zeros(1, 3, 128, 128)).shape == (1, 98, 2)


@pytest.mark.parametrize("config", PFLD_CONFIGS)
def test_batch_equals_one_by_one_in_eval(config: str) -> None:
    model = build_pfld(load_model_config(MODELS / config, width=0.25)).eval()
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        batch = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


# --- malformed YAML -------------------------------------------------------------------------------------


def v1_config(tmp_path: Path, body: list) -> Path:
    backbone = {"type": "mobilenet_v1", "input_size": 112, "width_multiplier": 1.0, "stem": [32, 3, 2], "body": body}
    write_yaml(tmp_path / "bb.yaml", backbone)
    model = yaml.safe_load((MODELS / "pfld.yaml").read_text())
    model["backbone"] = "bb.yaml"
    return write_yaml(tmp_path / "model.yaml", model)


GOOD_BODY = [[[32, 3, 1], [64, 1, 1]], [[64, 3, 2], [128, 1, 1]], [[128, 3, 2], [256, 1, 1]]]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOOD_BODY[:2] + [[[128, 3], [256, 1, 1]]], r"bb\.yaml: body row 2 \(depthwise\): expected a row"),
        (GOOD_BODY[:1] + [[[64, 3, 2], ["wide", 1, 1]]], r"bb\.yaml: body row 1 \(pointwise\).*positive integers"),
        (GOOD_BODY[:1] + [[[64, 3, 2], [128.5, 1, 1]]], r"body row 1 \(pointwise\).*positive integers"),
        (GOOD_BODY[:1] + [[[32, 3, 2], [128, 1, 1]]], r"body row 1 \(depthwise\): out_channels 32 must equal"),
        (GOOD_BODY + [[0, [256, 3, 1], [256, 1, 1]]], r"body row 3: expected a positive repeat count"),
        (GOOD_BODY + [[256, 3, 1]], r"body row 3: expected \[\[dw_out"),
    ],
)
def test_malformed_backbone_rows(tmp_path: Path, body: list, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_model_config(v1_config(tmp_path, body))


@pytest.mark.parametrize("backbone_file", ["mobilenet_v1.yaml", "mobilenet_v2.yaml"])
def test_backbone_activation_is_read_from_the_table(tmp_path: Path, backbone_file: str) -> None:
    backbone = yaml.safe_load((MODELS / backbone_file).read_text())
    model = yaml.safe_load((MODELS / "pfld_local.yaml").read_text())
    write_yaml(tmp_path / "bb.yaml", {**backbone, "activation": "leaky_relu"})
    leaky = build_pfld(load_model_config(write_yaml(tmp_path / "m.yaml", {**model, "backbone": "bb.yaml"})))
    kinds = {type(m) for m in leaky.backbone.modules()} & {torch.nn.ReLU, torch.nn.LeakyReLU}
    assert kinds == {torch.nn.LeakyReLU}  # every backbone activation, and only those: the head keeps ReLU
    assert isinstance(leaky.s2[-1], torch.nn.ReLU)
    write_yaml(tmp_path / "bb.yaml", {**backbone, "activation": "gelu"})
    with pytest.raises(ConfigError, match=r"bb\.yaml: activation: expected one of relu, leaky_relu, got 'gelu'"):
        load_model_config(tmp_path / "m.yaml")


def test_unknown_keys_and_missing_files(tmp_path: Path) -> None:
    path = v1_config(tmp_path, GOOD_BODY)
    model = yaml.safe_load(path.read_text())
    with pytest.raises(ConfigError, match=r"model\.yaml: unknown key 'num_point'"):
        load_model_config(write_yaml(path, {**model, "num_point": 68}))
    backbone = yaml.safe_load((tmp_path / "bb.yaml").read_text())
    write_yaml(tmp_path / "bb.yaml", {**backbone, "depth": 3})
    with pytest.raises(ConfigError, match=r"bb\.yaml: unknown key 'depth'"):
        load_model_config(write_yaml(path, model))
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load_model_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"backbone: file .*nothere\.yaml not found"):
        load_model_config(write_yaml(path, {**model, "backbone": "nothere.yaml"}))


def test_wrong_types_and_yaml_syntax(tmp_path: Path) -> None:
    model = yaml.safe_load((MODELS / "pfld.yaml").read_text())
    model["backbone"] = str(MODELS / "mobilenet_v1.yaml")
    with pytest.raises(ConfigError, match=r"num_points: expected a positive integer, got '98'"):
        load_model_config(write_yaml(tmp_path / "m.yaml", {**model, "num_points": "98"}))
    with pytest.raises(ConfigError, match=r"input_size: expected a multiple of 16"):
        load_model_config(write_yaml(tmp_path / "m.yaml", {**model, "input_size": 100}))
    broken = tmp_path / "broken.yaml"
    broken.write_text("backbone: a\nhead: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: "):
        load_model_config(broken)
    v2 = yaml.safe_load((MODELS / "mobilenet_v2.yaml").read_text())
    v2["blocks"][2] = [6, 32, 3]
    with pytest.raises(ConfigError, match=r"v2\.yaml: blocks row 2: expected a row \[t, c, n, s\]"):
        build_classifier(write_yaml(tmp_path / "v2.yaml", v2))


def test_backbone_table_values_are_checked_even_when_the_model_overrides_them(tmp_path: Path) -> None:
    path = v1_config(tmp_path, GOOD_BODY)  # pfld's ``width`` overrides the table's width_multiplier
    backbone = yaml.safe_load((tmp_path / "bb.yaml").read_text())
    for key in ("width_multiplier", "input_size"):
        write_yaml(tmp_path / "bb.yaml", {**backbone, key: "abc"})
        with pytest.raises(ConfigError, match=rf"bb\.yaml: {key}: expected a positive .*, got 'abc'"):
            load_model_config(path)


def test_input_size_is_bounded_before_anything_is_built() -> None:
    # ``landmark info --input-size 100000`` asked for 640 GB before; a multiple of 16, so only the bound stops it
    with pytest.raises(ConfigError, match=r"pfld\.yaml: input_size: expected a multiple of 16 up to 1024.*100000"):
        load_model_config(MODELS / "pfld.yaml", input_size=100000)


def test_a_binary_file_given_as_a_yaml_config_is_one_config_error(tmp_path: Path) -> None:
    from landmark.data.augment import load_augment_config
    from landmark.dms.config import load_dms_config

    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04" + bytes(range(128, 256)))  # a zip, as torch.save writes checkpoints
    for load in (load_model_config, load_dms_config, load_augment_config):
        with pytest.raises(ConfigError, match=r"model\.pt: not a text YAML file") as info:
            load(binary)
        assert "\n" not in str(info.value)


def test_info_command_prints_one_json_object() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "landmark", "info", "--config", str(MODELS / "pfld.yaml"), "--json", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["params"] > 0 and summary["mflops"] > 0 and summary["size_mb"] > 0


def test_info_command_bad_config_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "landmark", "info", "--config", str(tmp_path / "x.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "x.yaml: config file not found" in result.stderr


def test_both_opencv_wheels_share_one_version() -> None:
    from importlib.metadata import version

    import cv2

    assert version("opencv-python-headless") == version("opencv-contrib-python")
    assert cv2.__version__ == version("opencv-python-headless").rsplit(".", 1)[0]


# --- eye refiners (configs/models/pfld_refine.yaml) ---------------------------------------------------------


def test_refiner_patches_are_sampled_along_the_corner_axis() -> None:
    """An image whose channels hold each pixel's own (x, y) lets the strip report where it was sampled."""
    from landmark.models.pfld import Region, RegionRefiner

    regions = [Region((0, 1, 2), 0, 1), Region((3, 4), 4, 3)]
    refiner = RegionRefiner(regions, patch_size=8, margin=2.0, channels=(4,)).eval()
    size = 112
    u = (torch.arange(size) + 0.5) / size  # normalised pixel centres
    image = torch.stack([u.expand(size, size), u[:, None].expand(size, size), torch.zeros(size, size)])[None]
    a, angle = torch.tensor([0.4, 0.5]), torch.tensor(30.0).deg2rad()  # a tilted "eye", corners 0.2 apart
    b = a + 0.2 * torch.stack([angle.cos(), angle.sin()])
    c, d = torch.tensor([0.6, 0.3]), torch.tensor([0.7, 0.3])  # a level one, its corners listed b first
    coarse = torch.stack([a, b, (a + b) / 2, d, c])[None]
    corners = refiner.region_corners(coarse)
    assert torch.equal(corners[0], torch.stack([torch.stack([a, b]), torch.stack([c, d])]))
    strip = refiner.sample_patches(image, corners)
    assert strip.shape == (1, 3, 8, 16)  # two 8x8 patches side by side
    q = (torch.arange(8) + 0.5) / 8 * 2 - 1
    qy, qx = torch.meshgrid(q, q, indexing="ij")
    for r, (p, s) in enumerate([(a, b), (c, d)]):
        half_x = (s - p) * 1.0  # margin 2: the patch's half-width is one corner distance
        half_y = torch.stack([-half_x[1], half_x[0]])  # turned 90 degrees: points down the image
        expected = (p + s) / 2 + qx[..., None] * half_x + qy[..., None] * half_y
        # bilinear sampling of a linear ramp is exact: each pixel tells where it was sampled
        torch.testing.assert_close(strip[0, :2, :, 8 * r : 8 * r + 8].permute(1, 2, 0), expected, atol=1e-5, rtol=0)


def test_refiner_output_is_mapped_back_from_the_patch_frame() -> None:
    from landmark.models.pfld import Region, RegionRefiner

    refiner = RegionRefiner([Region((0, 1, 2), 0, 1)], patch_size=8, margin=1.6, channels=(4,)).eval()
    with torch.no_grad():
        refiner.fc.weight.zero_()  # output = bias: the corners at -+1/margin, a third point half-way down
        refiner.fc.bias.copy_(torch.tensor([-1 / 1.6, 0.0, 1 / 1.6, 0.0, 0.0, 0.5]))
    coarse = torch.tensor([[[0.3, 0.4], [0.5, 0.4], [0.0, 0.0]]])
    refined = refiner(torch.zeros(1, 3, 112, 112), coarse)
    expected = torch.tensor([[[0.3, 0.4], [0.5, 0.4], [0.4, 0.4 + 0.5 * 0.5 * 1.6 * 0.2]]])
    torch.testing.assert_close(refined, expected, atol=1e-6, rtol=0)


def test_refiner_jitter_moves_corner_pairs_rigidly_and_only_while_training() -> None:
    from landmark.models.pfld import Region, RegionRefiner

    refiner = RegionRefiner([Region((0, 1), 0, 1)], patch_size=8, channels=(4,), jitter=0.1)
    coarse = torch.tensor([[0.3, 0.4], [0.5, 0.4]]).expand(256, 2, 2)
    jittered = refiner.train().region_corners(coarse)
    assert torch.equal(refiner.eval().region_corners(coarse), coarse[:, None])
    width = (jittered[:, 0, 1] - jittered[:, 0, 0]).norm(dim=1)
    assert 0.05 < (width / 0.2).log().std() < 0.15  # log-scale noise of about 0.1
    centre_shift = jittered[:, 0].mean(dim=1) - torch.tensor([0.4, 0.4])
    assert 0.01 < centre_shift.std() < 0.03  # 0.1 corner distances


def test_refined_model_replaces_only_the_refined_points() -> None:
    cfg = load_model_config(MODELS / "pfld_refine.yaml", num_points=68, width=0.25)
    model = build_pfld(cfg).eval()
    x = torch.randn(2, 3, 112, 112)
    landmarks, coarse, _ = model.forward_with_features(x)
    refined = list(range(36, 48)) + list(range(60, 68))  # 300-W eye contours and inner lips
    others = [i for i in range(68) if i not in refined]
    assert torch.equal(landmarks[:, others], coarse[:, others])
    assert not torch.allclose(landmarks[:, refined], coarse[:, refined])
    assert torch.equal(model(x), landmarks)
    # WFLW: eight contour points and the pupil per eye, eight inner-lip points
    cfg98 = load_model_config(MODELS / "pfld_refine.yaml", num_points=98, width=0.25)
    assert sorted(build_pfld(cfg98).refiner.indices) == list(range(60, 76)) + list(range(88, 96)) + [96, 97]


@pytest.mark.parametrize(
    ("refine", "expected"),
    [
        ({"regions": ["left_eye", "nose"]}, r"refine: regions: expected distinct names"),
        ({"regions": []}, r"refine: regions: expected distinct names"),
        ({"regions": ["left_eye"], "patch_size": 30}, r"refine: patch_size: expected a positive multiple of 8"),
        ({"regions": ["left_eye"], "margin": 0.5}, r"refine: margin: expected a number > 1"),
        ({"regions": ["left_eye"], "channels": [16, 0]}, r"refine: channels: expected a list of positive"),
        ({"regions": ["left_eye"], "size": 32}, r"refine: unknown key 'size'"),
    ],
)
def test_bad_refine_configs(tmp_path: Path, refine: dict, expected: str) -> None:
    model = yaml.safe_load((MODELS / "pfld_refine.yaml").read_text())
    model["backbone"] = str(MODELS / "mobilenet_v1.yaml")
    with pytest.raises(ConfigError, match=expected):
        load_model_config(write_yaml(tmp_path / "m.yaml", {**model, "refine": refine}))


# --- local refiner (configs/models/pfld_local.yaml) -------------------------------------------------------


def coordinate_ramp(size: int) -> torch.Tensor:
    """(1, 2, size, size) features whose channels hold each cell centre's normalised x and y."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return torch.stack([centres.expand(size, size), centres[:, None].expand(size, size)])[None]


def test_local_refiner_starts_as_the_identity() -> None:
    refiner = LocalRefiner((0, 2), in_channels=8, channels=4, hidden=6, grid=3).eval()
    coarse = torch.rand(2, 3, 2)
    torch.testing.assert_close(refiner(torch.randn(2, 8, 28, 28), coarse), coarse[:, [0, 2]])


def test_local_refiner_reads_the_features_at_each_point() -> None:
    # read-out "dx = feature x, dy = feature y" on a coordinate ramp: each point moves by its own position,
    # so the output is twice the point iff the sample was taken exactly at the point (same pixel convention)
    refiner = LocalRefiner((0, 1), in_channels=2, grid=1, jitter=0.0).eval()
    with torch.no_grad():
        refiner.weight.copy_(torch.eye(2).expand(2, 2, 2))
    coarse = torch.tensor([[[0.3, 0.6], [0.55, 0.2]]])
    torch.testing.assert_close(refiner(coordinate_ramp(28), coarse), 2 * coarse, atol=1e-6, rtol=0)
    # a 3x3 neighbourhood samples a square of cells "spread" apart, centred on the point
    wide = LocalRefiner((0,), in_channels=2, grid=3, spread=0.1)
    torch.testing.assert_close(wide.offsets[:, 0], torch.tensor([-0.1, 0.0, 0.1] * 3))
    torch.testing.assert_close(wide.offsets[:, 1], torch.tensor([-0.1] * 3 + [0.0] * 3 + [0.1] * 3))


def test_local_refiner_jitters_its_sampling_points_only_while_training() -> None:
    refiner = LocalRefiner((0,), in_channels=2, grid=1, jitter=0.02)
    coarse, features = torch.full((4096, 1, 2), 0.5), coordinate_ramp(28).expand(4096, -1, -1, -1)
    assert 0.015 < (refiner.train()(features, coarse) - 0.5).std() < 0.025
    assert torch.equal(refiner.eval()(features, coarse), coarse)


def test_locally_refined_model_owns_every_point_the_region_refiner_does_not() -> None:
    cfg = load_model_config(MODELS / "pfld_local.yaml", num_points=68, width=0.25)
    model = build_pfld(cfg).eval()
    regions = set(model.refiner.indices)
    assert sorted(model.local.indices) == [i for i in range(68) if i not in regions]
    with torch.no_grad():
        model.local.bias.fill_(0.01)  # a visible correction
    x = torch.randn(2, 3, 112, 112)
    landmarks, coarse, _ = model.forward_with_features(x)
    local = list(model.local.indices)
    torch.testing.assert_close(landmarks[:, local], coarse[:, local] + 0.01)
    assert not torch.allclose(landmarks[:, sorted(regions)], coarse[:, sorted(regions)])


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ({"grid": 0}, r"local: grid: expected an integer >= 1, got 0"),
        ({"channels": -4}, r"local: channels: expected an integer >= 0"),
        ({"hidden": 2.5}, r"local: hidden: expected an integer >= 0"),
        ({"spread": -0.1}, r"local: spread: expected a number >= 0"),
        ({"stride": 4}, r"local: unknown key 'stride'"),
        ([1, 2], r"local: expected a mapping"),
    ],
)
def test_bad_local_configs(tmp_path: Path, local: object, expected: str) -> None:
    model = yaml.safe_load((MODELS / "pfld_local.yaml").read_text())
    model["backbone"] = str(MODELS / "mobilenet_v1.yaml")
    with pytest.raises(ConfigError, match=expected):
        load_model_config(write_yaml(tmp_path / "m.yaml", {**model, "local": local}))


def test_dead_batchnorm_channels_are_silenced_without_changing_ordinary_outputs() -> None:
    from landmark.models.backbone import conv_bn_act, silence_dead_channels

    block = conv_bn_act(1, 2, 1).eval()
    with torch.no_grad():
        block[0].weight.copy_(torch.tensor([1.0, 1e-2]).view(2, 1, 1, 1))  # channel 1: a filter decayed to ~0
        block[1].running_mean.copy_(torch.tensor([0.0, 0.0]))
        block[1].running_var.copy_(torch.tensor([1.0, 1e-9]))  # ...that saw the same value on every image
        block[1].bias.copy_(torch.tensor([0.0, 0.5]))
    ordinary, unusual = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 50.0)
    before_ordinary, before_unusual = block(ordinary), block(unusual)
    assert before_unusual[0, 1].max() > 100  # the dead channel's gain of ~300 turns 50 * 1e-2 into >100
    assert silence_dead_channels(block) == 1
    torch.testing.assert_close(block(ordinary), before_ordinary)  # what training saw is unchanged
    torch.testing.assert_close(block(unusual)[0, 1], torch.full((2, 2), 0.5))  # the channel gives its bias
    torch.testing.assert_close(block(unusual)[0, 0], before_unusual[0, 0])  # live channels untouched
