"""ONNX export: parity with PyTorch, folded BatchNorm, metadata round trip, bad files and INT8 accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import write_synthetic_face

from landmark.checkpoint import load_model, save_checkpoint
from landmark.commands import export as export_command
from landmark.config import CONFIG_DIR
from landmark.data.crop import crop_matrix, face_box_from_points, points_to_crop
from landmark.data.schemes import scheme_for
from landmark.errors import DataError, LandmarkError
from landmark.inference.export import batchnorm_count, export_checkpoint, read_onnx_metadata
from landmark.inference.metadata import config_hash
from landmark.inference.quantize import (
    CALIBRATION_BOX_JITTER,
    coordinate_nodes,
    dataset_crops,
    export_int8,
    fp32_backbone_convs,
    run_onnx,
)
from landmark.models.pfld import build_pfld, load_model_config

TRAIN_CONFIG = {"data": {"crop_scale": 1.3, "format": "300w"}, "train": {"epochs": 1}}


def make_checkpoint(
    path: Path, num_points: int = 68, width: float = 0.25, train_config: dict | None = None, config: str = "pfld.yaml"
) -> Path:
    """A tiny random PFLD checkpoint whose BatchNorm layers are far from identity, so folding matters.

    The running statistics come from a forward pass in training mode (as after real training), and the
    affine parameters are randomised, so every BatchNorm both rescales and shifts.
    """
    torch.manual_seed(0)
    cfg = load_model_config(CONFIG_DIR / "models" / config, num_points=num_points, width=width)
    model = build_pfld(cfg)
    with torch.no_grad():  # points inside the crop, as a trained model gives, so refiners sample real pixels
        model.fc.bias.uniform_(0.3, 0.7)
        model.fc.weight.mul_(0.01)
        if model.local is not None:  # a read-out that is not zero, so the local stage really moves the points
            model.local.weight.normal_(0.0, 0.05)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running stats = the plain average over the batches below
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.3)
    with torch.no_grad():
        model.train()(torch.rand(8, 3, 112, 112) * 2 - 1)
    model.eval()
    scheme = "300w68" if num_points == 68 else "wflw98"
    state = {"model": model.state_dict(), "ema": None, "model_config": cfg, "scheme": scheme}
    save_checkpoint({**state, "train_config": train_config}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, its ONNX export), built once for the tests that only read them."""
    tmp_path = tmp_path_factory.mktemp("export")
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", train_config=TRAIN_CONFIG)
    onnx_path = tmp_path / "tiny.onnx"
    export_checkpoint(checkpoint, onnx_path)
    return checkpoint, onnx_path


def test_onnx_matches_pytorch_and_has_no_batchnorm(exported: tuple[Path, Path]) -> None:
    checkpoint, onnx_path = exported
    graph = onnx.load(str(onnx_path))
    assert batchnorm_count(graph) == 0
    assert graph.opset_import[0].version >= 17
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == ["landmarks"]

    model, _, _ = load_model(checkpoint)
    ramp = np.broadcast_to(np.linspace(-1, 1, 112, dtype=np.float32), (3, 112, 112))
    noise = np.random.default_rng(1).uniform(-1, 1, (3, 112, 112)).astype(np.float32)
    images = np.stack([ramp, -ramp.transpose(0, 2, 1), noise])  # batch 3: the batch axis is dynamic
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    actual = session.run(["landmarks"], {"image": images})[0]
    assert actual.shape == (3, 68, 2)
    assert np.abs(actual - expected).max() <= 1e-4
    # the outputs vary with the input, so the parity above is not two constants agreeing
    assert np.abs(expected[0] - expected[1]).max() > 1e-3


def test_refined_model_exports_as_one_graph(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "eyes.pt", num_points=98, config="pfld_refine.yaml")
    summary = export_checkpoint(checkpoint, tmp_path / "eyes.onnx")
    assert summary["max_abs_diff"] <= 1e-4
    graph = onnx.load(str(tmp_path / "eyes.onnx"))
    assert sum(node.op_type == "GridSample" for node in graph.graph.node) == 1  # all regions in one strip
    model, _, _ = load_model(checkpoint)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    actual = ort.InferenceSession(str(tmp_path / "eyes.onnx")).run(["landmarks"], {"image": images})[0]
    assert np.abs(actual - expected).max() <= 1e-4
    assert np.abs(expected[:, 60:76] - expected[:, 60:76].mean()).max() > 1e-3  # the eyes depend on the pixels


def test_locally_refined_model_exports_with_parity(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "local.pt", config="pfld_local.yaml")
    summary = export_checkpoint(checkpoint, tmp_path / "local.onnx")
    assert summary["max_abs_diff"] <= 1e-4
    graph = onnx.load(str(tmp_path / "local.onnx"))
    assert sum(node.op_type == "GridSample" for node in graph.graph.node) == 2  # region strip + all points
    model, _, _ = load_model(checkpoint)
    images = np.random.default_rng(3).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
        first_stage = model.forward_with_features(torch.from_numpy(images))[1].numpy()
    actual = ort.InferenceSession(str(tmp_path / "local.onnx")).run(["landmarks"], {"image": images})[0]
    assert np.abs(actual - expected).max() <= 1e-4
    jaw = slice(0, 17)  # moved by the local stage, and the move survives export
    assert np.abs(expected[:, jaw] - first_stage[:, jaw]).max() > 1e-3


def test_metadata_round_trip(exported: tuple[Path, Path]) -> None:
    meta = read_onnx_metadata(exported[1])
    assert meta["scheme"] == "300w68"
    assert meta["num_points"] == 68 and meta["input_size"] == 112
    assert meta["crop_scale"] == pytest.approx(1.3)  # from the checkpoint's training config, not the default
    assert (meta["image_mean"], meta["image_std"], meta["color_order"]) == (0.5, 0.5, "bgr")
    assert meta["precision"] == "fp32"
    assert meta["train_config_sha256"] == config_hash(TRAIN_CONFIG)
    assert "(crop_px + 0.5) / input_size" in meta["landmark_convention"]


def test_config_hash_is_canonical() -> None:
    reordered = {"train": {"epochs": 1}, "data": {"format": "300w", "crop_scale": 1.3}}
    assert config_hash(reordered) == config_hash(TRAIN_CONFIG)
    assert config_hash({**TRAIN_CONFIG, "train": {"epochs": 2}}) != config_hash(TRAIN_CONFIG)
    assert config_hash(None) == "none"


def test_export_without_train_config_uses_defaults(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "bare.pt", num_points=98)
    export_checkpoint(checkpoint, tmp_path / "bare.onnx")
    meta = read_onnx_metadata(tmp_path / "bare.onnx")
    assert (meta["scheme"], meta["num_points"], meta["crop_scale"]) == ("wflw98", 98, 1.25)
    assert meta["train_config_sha256"] == "none"


def test_corrupt_and_foreign_onnx_files_are_one_line_errors(tmp_path: Path, exported: tuple[Path, Path]) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(LandmarkError, match="corrupt.onnx"):
        read_onnx_metadata(corrupt)
    foreign = onnx.load(str(exported[1]))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(LandmarkError, match="foreign.onnx: not a landmark ONNX model"):
        read_onnx_metadata(tmp_path / "foreign.onnx")


def test_export_refuses_old_opset(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(LandmarkError, match="opset"):
        export_checkpoint(checkpoint, tmp_path / "old.onnx", opset=13)
    assert not (tmp_path / "old.onnx").exists()


def test_export_refuses_an_opset_the_installed_exporter_cannot_write(tmp_path: Path) -> None:
    from torch.onnx import _constants

    newest = _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET  # 20 in torch 2.14; 21-23 only warn, 24 and up fail
    checkpoint = make_checkpoint(tmp_path / "tiny.pt")
    for opset in (newest + 1, 99):
        with pytest.raises(LandmarkError, match=rf"--opset: expected 17 to {newest} .*, got {opset}$"):
            export_checkpoint(checkpoint, tmp_path / "new.onnx", opset=opset)
    assert not (tmp_path / "new.onnx").exists()


def test_int8_calibration_refuses_a_degenerate_face(tmp_path: Path, exported: tuple[Path, Path]) -> None:
    # 68 identical points gave "ValueError: inter_ocular normaliser is zero" after quantizing; now the table is
    # refused when read, naming the entry, before anything is written.
    image, points = write_synthetic_face(tmp_path, "face")
    faces = [{"image": image.name, "points": points.tolist()}, {"image": image.name, "points": [[50.0, 60.0]] * 68}]
    (tmp_path / "faces.json").write_text(json.dumps(faces))
    with pytest.raises(DataError, match=r"faces.json: entry 1: degenerate points"):
        export_int8(exported[1], tmp_path / "x.int8.onnx", "json", tmp_path / "faces.json")
    assert not (tmp_path / "x.int8.onnx").exists()


def test_calibration_moves_every_second_face_in_its_crop(tmp_path: Path) -> None:
    # The coordinate outputs are INT8 too: calibrated on centred faces alone, their range ended where centred
    # faces end, and a face lower or larger in a detector's crop had its chin clipped (quantize.py docstring).
    entries = []
    for i, spacing in enumerate(np.linspace(10.0, 17.0, 6)):
        image, points = write_synthetic_face(tmp_path, f"face{i}", spacing=float(spacing))
        entries.append({"image": image.name, "points": points.tolist()})
    (tmp_path / "faces.json").write_text(json.dumps(entries))

    def crops(jitter: float) -> tuple[np.ndarray, np.ndarray]:
        return dataset_crops("json", tmp_path / "faces.json", scheme_for(68), 112, 1.25, box_jitter=jitter)

    (centred, centred_points), (moved, moved_points) = crops(0.0), crops(0.2)
    assert np.array_equal(moved[0::2], centred[0::2]) and np.array_equal(moved_points[0::2], centred_points[0::2])
    for i in (1, 3, 5):
        shift = np.abs(moved_points[i].mean(0) - centred_points[i].mean(0)).max()
        size = np.ptp(moved_points[i], 0).max() / np.ptp(centred_points[i], 0).max()
        assert shift > 0.005 or abs(size - 1) > 0.02, (i, shift, size)
    assert moved_points.min() < centred_points.min() or moved_points.max() > centred_points.max()
    again, again_points = crops(0.2)  # the same crops every time
    assert np.array_equal(again, moved) and np.array_equal(again_points, moved_points)
    with pytest.raises(LandmarkError, match=r"calibration box jitter: expected .* \[0, 0.5\], got 0.6"):
        crops(0.6)
    assert export_command.CALIBRATION_BOX_JITTER == CALIBRATION_BOX_JITTER  # the CLI's copy of the default


def mean_shape_checkpoint(path: Path, mean_shape: np.ndarray) -> Path:
    """A random network whose head is biased to ``mean_shape``: outputs that look like faces, as a trained
    model's do, so the NME comparison between fp32 and INT8 is measured on meaningful predictions."""
    make_checkpoint(path)
    state = torch.load(path, weights_only=True)
    state["model"]["fc.bias"] = torch.from_numpy(mean_shape.reshape(-1).astype(np.float32))
    state["model"]["fc.weight"] *= 0.05
    save_checkpoint(state, path)
    return path


def test_int8_stays_close_to_fp32(tmp_path: Path) -> None:
    # Eight synthetic faces of different sizes, read through the JSON table format like user data.
    entries = []
    for i, spacing in enumerate(np.linspace(10.0, 17.0, 8)):
        image, points = write_synthetic_face(tmp_path, f"face{i}", spacing=float(spacing))
        entries.append({"image": image.name, "points": points.tolist()})
    table = tmp_path / "faces.json"
    table.write_text(json.dumps(entries))

    _, points = write_synthetic_face(tmp_path, "mean")
    mean_shape = points_to_crop(points, crop_matrix(face_box_from_points(points), 112, 1.25), 112)
    checkpoint = mean_shape_checkpoint(tmp_path / "mean.pt", mean_shape)
    fp32 = tmp_path / "mean.onnx"
    export_checkpoint(checkpoint, fp32)
    # centred crops only: a network that outputs the mean shape cannot follow a face moved in its crop
    summary = export_int8(fp32, tmp_path / "mean.int8.onnx", "json", table, box_jitter=0.0)

    assert summary["n"] == 8
    assert read_onnx_metadata(tmp_path / "mean.int8.onnx")["precision"] == "int8"
    assert (tmp_path / "mean.int8.onnx").stat().st_size < 0.8 * fp32.stat().st_size
    assert summary["nme_fp32"] < 0.2  # predictions near the faces, so the comparison means something
    # Stated tolerance: INT8 changes the inter-ocular NME by at most 0.005 (half a percent).
    assert abs(summary["nme_change"]) <= 0.005

    # The backbone's stem and first depthwise conv stay fp32 (faster there): in the QDQ graph their weights are
    # plain float tensors, while every other conv reads its weights through a DequantizeLinear of int8 ones.
    graph = onnx.load(str(tmp_path / "mean.int8.onnx")).graph
    weights = {init.name: init for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    float_convs = [node.name for node in convs if node.input[1] in weights]
    assert float_convs == fp32_backbone_convs(onnx.load(str(fp32)))
    assert [weights[node.input[1]].dims[1] for node in convs if node.name in float_convs] == [3, 1]  # stem, dw
    assert len(convs) - len(float_convs) >= 10


def test_int8_keeps_the_coordinate_arithmetic_fp32(tmp_path: Path) -> None:
    # With both refiners: after the first stage's fc only their conv nets and fc layers run in INT8; the grids,
    # corrections and final points stay fp32, so the output is not confined to 256 levels (quantize.py).
    entries = []
    for i, spacing in enumerate(np.linspace(10.0, 17.0, 6)):
        image, points = write_synthetic_face(tmp_path, f"face{i}", spacing=float(spacing))
        entries.append({"image": image.name, "points": points.tolist()})
    (tmp_path / "faces.json").write_text(json.dumps(entries))
    fp32 = tmp_path / "local.onnx"
    export_checkpoint(make_checkpoint(tmp_path / "local.pt", config="pfld_local.yaml"), fp32)
    int8 = tmp_path / "local.int8.onnx"
    export_int8(fp32, int8, "json", tmp_path / "faces.json")

    graph = onnx.load(str(fp32)).graph
    kept = coordinate_nodes(onnx.load(str(fp32)))
    op_types = {node.name: node.op_type for node in graph.node}
    assert any(name.startswith("/local/") for name in kept) and any(name.startswith("/refiner/") for name in kept)
    assert {"GridSample", "MatMul", "Add", "Concat"} <= {op_types[name] for name in kept}
    assert not {"Conv", "Gemm", "Relu"} & {op_types[name] for name in kept}
    assert op_types[kept[-1]] == "Gather" and graph.node[-1].name == kept[-1]  # the reordering into landmarks

    quantized = onnx.load(str(int8)).graph
    producer = {out: node for node in quantized.node for out in node.output}
    assert producer["landmarks"].op_type == "Gather"  # not a DequantizeLinear of 8-bit points
    weights = {init.name for init in quantized.initializer}
    refiner_convs = [n for n in quantized.node if n.op_type == "Conv" and n.name.startswith("/refiner/convs/")]
    assert refiner_convs and all(n.input[1] not in weights for n in refiner_convs)  # int8 weights, dequantized
    crops = np.random.default_rng(0).uniform(-1, 1, (16, 3, 112, 112)).astype(np.float32)
    assert len(np.unique(run_onnx(int8, crops))) > 256


def test_benchmark_reports_every_backend_and_thread_count() -> None:
    from landmark.bench.infer import benchmark_inference, format_table

    cfg = load_model_config(CONFIG_DIR / "models" / "pfld.yaml", num_points=68, width=0.25)
    result = benchmark_inference(cfg, label="tiny", threads=(1,), runs=5, warmup=1, batch=4, int8=False)
    assert [(row["backend"], row["threads"]) for row in result["timings"]] == [("pytorch", 1), ("onnx fp32", 1)]
    assert all(0 < row["p50_ms"] <= row["p90_ms"] for row in result["timings"])
    assert result["params"] == sum(p.numel() for p in build_pfld(cfg).parameters())
    table = format_table([result])
    assert table.splitlines()[2].startswith("tiny") and len(table.splitlines()) == 2 + 2


def test_bench_infer_measures_one_checkpoint_when_given(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from landmark.cli import main

    checkpoint = make_checkpoint(tmp_path / "tiny.pt")
    assert main(["bench", "--infer", "--checkpoint", str(checkpoint), "--runs", "5", "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)["infer"]
    assert [row["model"] for row in rows] == ["tiny"] and rows[0]["num_points"] == 68
    assert main(["bench", "--infer", "--checkpoint", str(tmp_path / "tiny.onnx")]) != 0
    assert "--checkpoint: expected a .pt checkpoint" in capsys.readouterr().err


def test_inference_only_checkpoint_keeps_the_ema_weights(tmp_path: Path) -> None:
    from landmark.checkpoint import load_checkpoint
    from landmark.cli import main

    source = make_checkpoint(tmp_path / "run.pt")
    state = load_checkpoint(source)
    ema = {k: v * 1.01 if v.dtype.is_floating_point else v for k, v in state["model"].items()}
    save_checkpoint({**state, "ema": ema, "optimizer": {"state": {}}}, source)
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "m.onnx"),
                 "--pt", str(tmp_path / "slim.pt")]) == 0  # fmt: skip
    slim = load_checkpoint(tmp_path / "slim.pt")
    assert slim.get("optimizer") is None and slim["ema"] is None and slim["aux"] is None
    for name, value in ema.items():
        torch.testing.assert_close(slim["model"][name], value)


def test_eval_scores_an_onnx_export_as_its_checkpoint(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """``landmark eval --checkpoint model.onnx`` runs the export with ONNX Runtime on the same crops (the
    crop scale from its metadata) and gets the checkpoint's figures."""
    from landmark.cli import main

    checkpoint, onnx_path = exported
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        _, points = write_synthetic_face(faces, name=f"face{i}", spacing=12.0 + 2 * i)
        rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)  # 300-W files count from 1
        (faces / f"face{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{rows}\n}}\n")
    results = {}
    for model in (checkpoint, onnx_path):
        out = tmp_path / f"{model.suffix[1:]}.json"
        assert main(["eval", "--checkpoint", str(model), "--data-format", "300w", "--data", str(faces),
                     "--json", str(out)]) == 0  # fmt: skip
        results[model.suffix] = json.loads(out.read_text())
    assert results[".onnx"]["n"] == 3
    assert results[".onnx"]["nme_mean"] == pytest.approx(results[".pt"]["nme_mean"], abs=1e-5)
    assert results[".onnx"]["regions"].keys() == {"jaw", "brows", "nose", "eyes", "mouth"}
