"""INT8 static quantization of an exported model with ONNX Runtime, calibrated on real face crops.

Static quantization needs activation ranges, so a calibration reader feeds crops through the fp32 model.
Real crops (``LandmarkDataset`` without augmentation, so exactly what the predictor sees) give ranges that
match deployment; random crops are fine for timing only. We use the QDQ format with per-channel weights:
ONNX Runtime's CPU provider fuses QDQ pairs into integer kernels, and per-channel scales matter for the
depthwise convolutions, whose channels have very different weight ranges.

Two convolutions stay fp32: the backbone's first two (``fp32_backbone_convs``), the 3-channel stem and the
first depthwise convolution, both at the highest resolution (56x56 at 112). ONNX Runtime's integer kernels are
slow at those shapes (few input channels; depthwise), while its fp32 NCHWc kernels are fast: profiled on the
default model they took 16% of the INT8 graph's time, and keeping them fp32 makes the whole graph 9% faster at
the same accuracy.

So does the arithmetic on landmark coordinates after the first stage (``coordinate_nodes``): the refiners'
sampling grids, their corrections and the final points. In INT8 every one of those tensors had one 8-bit
scale, a step of about half a pixel at 112 and a range fixed by the calibration crops, and each refiner stage
added another rounding. Kept fp32 (the refiners' convolutions and fully connected layers stay INT8), the
INT8 loss of the default weights of 2026-12-03 fell from 0.03-0.08 points of NME to nothing, and the graph
got 2% faster: fewer quantize and dequantize steps around nodes of a few hundred values (docs/results.md,
2026-12-05, seventh session).

Each activation's range is the 99.99th percentile of its values on the calibration crops
(``CALIBRATION_METHODS``), not their extreme: measured on two 300-W models, as good as min-max or up to 0.05
points of NME better (docs/results.md, 2026-12-05).

Every second calibration crop is cut around a moved and rescaled landmark box (``CALIBRATION_BOX_JITTER``).
The first stage's fully connected layer still outputs INT8 coordinates, whose range comes from the
calibration crops: centred crops alone put every point between 0 and 0.93 of the crop, so the points of a
face that sits lower or larger in a detector's crop were clipped there. On the default model's validation
faces, cropped around Haar's boxes, INT8 cost 0.21 points of NME with centred calibration crops and 0.07
with the moved ones, before the coordinate arithmetic went fp32 (docs/results.md, 2026-12-05, seventh
session).

The accuracy cost is measured on the same crops: NME of fp32 and INT8 ONNX Runtime outputs against the
ground truth, so the printed change is the quantization's alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from landmark.data.schemes import Scheme
from landmark.errors import LandmarkError
from landmark.files import write_atomic
from landmark.inference.export import load_onnx, read_onnx_metadata, set_metadata
from landmark.inference.metadata import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger(__name__)

CALIBRATION_BATCH = 16
CALIBRATION_PERCENTILE = 99.99
# every second calibration crop: the landmark box moved by up to this share of its side and scaled by up to 1 +- it
CALIBRATION_BOX_JITTER = 0.2
# how ``quantize_int8`` sets each activation's range from the calibration crops
CALIBRATION_METHODS = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax}


class _CropReader(CalibrationDataReader):
    """ONNX Runtime calibration reader: yields ``{"image": batch}`` dicts, then None."""

    def __init__(self, images: np.ndarray, batch_size: int = CALIBRATION_BATCH) -> None:
        super().__init__()
        self.batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {INPUT_NAME: np.ascontiguousarray(self.batches[self.position - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.position = 0


FP32_BACKBONE_CONVS = 2  # how many of the backbone's first convolutions stay fp32 (see the module docstring)
# the nodes after the first stage that compute with coordinates yet stay INT8: the refiners' conv nets and layers
INT8_AFTER_FIRST_STAGE = ("Conv", "Gemm", "Relu")


def fp32_backbone_convs(model: onnx.ModelProto, count: int = FP32_BACKBONE_CONVS) -> list[str]:
    """Names of the first ``count`` Conv nodes of the backbone (graph order; torch names them /backbone/...)."""
    convs = [node.name for node in model.graph.node if node.op_type == "Conv" and node.name.startswith("/backbone/")]
    return convs[:count]


def coordinate_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes downstream of the first stage's fully connected layer (the graph's first Gemm: its
    output is the coarse landmarks) other than ``INT8_AFTER_FIRST_STAGE`` ones: the refiners' grids, their
    corrections and the final points, in graph order."""
    first_fc = next((node for node in model.graph.node if node.op_type == "Gemm"), None)
    if first_fc is None:
        return []
    frontier, names = set(first_fc.output), []
    for node in model.graph.node:  # graph order is topological, so one pass reaches every descendant
        if frontier.intersection(node.input):
            frontier.update(node.output)
            if node.op_type not in INT8_AFTER_FIRST_STAGE:
                names.append(node.name)
    return names


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes ``quantize_int8`` leaves fp32: ``fp32_backbone_convs`` and ``coordinate_nodes``."""
    return fp32_backbone_convs(model) + coordinate_nodes(model)


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray, method: str = "percentile"
) -> dict[str, Any]:
    """Write an INT8 (QDQ, per-channel) copy of ``fp32_path`` calibrated on (N, 3, S, S) crops with one of
    ``CALIBRATION_METHODS``; the nodes ``fp32_nodes`` names stay fp32."""
    if calibration.ndim != 4 or len(calibration) == 0:
        raise LandmarkError(f"INT8 calibration needs a (N, 3, S, S) batch of crops, got shape {calibration.shape}")
    if method not in CALIBRATION_METHODS:
        raise LandmarkError(
            f"INT8 calibration method: expected one of {', '.join(CALIBRATION_METHODS)}, got {method!r}"
        )
    metadata = {prop.key: prop.value for prop in load_onnx(fp32_path).metadata_props}
    reader = _CropReader(calibration)
    with tempfile.TemporaryDirectory(prefix="landmark-int8-") as tmp:
        prepared, tmp_path = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # Shape inference + graph clean-up first, as ONNX Runtime recommends: it lets the quantizer see
        # every tensor's shape and fold what the optimiser would fold anyway.
        quant_pre_process(str(fp32_path), str(prepared))
        keep_fp32 = fp32_nodes(onnx.load(str(prepared)))
        logger.debug("INT8: keeping %s in fp32", ", ".join(keep_fp32) or "nothing")
        with contextlib.redirect_stdout(io.StringIO()) as said:  # the percentile calibrator prints its settings
            quantize_static(
                str(prepared),
                str(tmp_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep_fp32,
                calibrate_method=CALIBRATION_METHODS[method],
                extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
            )
        if said.getvalue().strip():
            logger.debug("ONNX Runtime's calibrator: %s", " ".join(said.getvalue().split()))
        proto = onnx.load(str(tmp_path))
    set_metadata(proto, {**metadata, "precision": "int8"})  # the quantizer drops metadata_props
    data = proto.SerializeToString()
    write_atomic(out_path, data)
    return {"path": str(out_path), "bytes": len(data), "calibration_crops": len(calibration), "method": method}


def dataset_crops(
    data_format: str,
    root: str | Path,
    scheme: Scheme,
    input_size: int,
    crop_scale: float,
    limit: int = 256,
    box_jitter: float = CALIBRATION_BOX_JITTER,
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, S, S), ground truth (N, K, 2) normalised) of up to ``limit`` faces, evenly spread.

    Even-numbered crops are cut around the landmark box, odd-numbered ones around that box moved and scaled by
    up to ``box_jitter`` (seed 0, so the crops are the same every time; 0: all centred), as a detector's box
    places a face at deployment (see the module docstring)."""
    from landmark.data.dataset import LandmarkDataset, build_records

    if not 0.0 <= box_jitter <= 0.5:
        raise LandmarkError(f"calibration box jitter: expected a share of the box side in [0, 0.5], got {box_jitter}")
    records = build_records({"format": data_format, "root": str(root)}, "test")
    if not records:
        raise LandmarkError(f"{root}: no annotated faces found for INT8 calibration")
    picks = np.unique(np.linspace(0, len(records) - 1, min(limit, len(records))).round().astype(int))
    chosen = [records[i] for i in picks]
    centred = LandmarkDataset(chosen, scheme, input_size, crop_scale, augment=None)
    moved = LandmarkDataset(chosen, scheme, input_size, crop_scale, augment=None, box_jitter=box_jitter, seed=0)
    samples = [(moved if i % 2 else centred)[i] for i in range(len(chosen))]
    images = np.stack([s["image"].numpy() for s in samples])
    landmarks = np.stack([s["landmarks"].numpy() for s in samples])
    return images, landmarks


def run_onnx(path: str | Path, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, K, 2) outputs of an ONNX model over a stack of crops."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size]})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs)


def int8_nme_change(
    fp32_path: str | Path, int8_path: str | Path, images: np.ndarray, landmarks: np.ndarray, scheme: Scheme
) -> dict[str, float]:
    """Inter-ocular NME (mean) of both models on the same crops, and the change INT8 brings."""
    from landmark.train.evaluate import score

    fp32 = score(run_onnx(fp32_path, images), landmarks, scheme)["nme_mean"]
    int8 = score(run_onnx(int8_path, images), landmarks, scheme)["nme_mean"]
    return {"nme_fp32": float(fp32), "nme_int8": float(int8), "nme_change": float(int8 - fp32), "n": len(images)}


def export_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    data_format: str,
    data_root: str | Path,
    limit: int = 256,
    crops: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "percentile",
    box_jitter: float = CALIBRATION_BOX_JITTER,
) -> dict[str, Any]:
    """Quantize an exported model on crops of a dataset (``quantize_int8``) and measure the NME change on
    those crops.

    ``crops``: ``dataset_crops``' (images, landmarks) when the caller read them already (``landmark export``
    does, to fail on bad calibration data before it writes anything)."""
    from landmark.data.schemes import scheme_for

    meta = read_onnx_metadata(fp32_path)
    scheme = scheme_for(meta["scheme"])
    if crops is None:
        crops = dataset_crops(data_format, data_root, scheme, meta["input_size"], meta["crop_scale"], limit, box_jitter)
    images, landmarks = crops
    summary = quantize_int8(fp32_path, out_path, images, method)
    summary.update(int8_nme_change(fp32_path, out_path, images, landmarks, scheme))
    logger.debug("INT8 NME %.4f -> %.4f on %d crops", summary["nme_fp32"], summary["nme_int8"], summary["n"])
    return summary
