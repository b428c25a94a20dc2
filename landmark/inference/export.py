"""ONNX export of the PFLD inference network, with the metadata a runtime needs and a parity check.

The exported graph is the inference network only (the training-only auxiliary pose net is never part of
``PFLD``): input ``image`` (N, 3, S, S) float32, the normalised BGR crop of ``landmark.data.crop``; output
``landmarks`` (N, K, 2) float32 in normalised crop coordinates. The batch axis is dynamic.

We use the TorchScript-based exporter (``dynamo=False``): it works offline, needs no ``onnxscript`` and, in
eval mode with constant folding, folds every BatchNorm into the convolution before it. The export checks
that no ``BatchNormalization`` node survived and that ONNX Runtime agrees with PyTorch to 1e-4.

Everything a runtime needs to use the file correctly travels in ``metadata_props`` (see
``landmark.inference.metadata``); ``read_onnx_metadata`` reads it back with numbers as numbers.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from landmark.data.schemes import Scheme
from landmark.errors import LandmarkError
from landmark.files import write_atomic
from landmark.inference.metadata import (
    DEFAULT_CROP_SCALE,
    INPUT_NAME,
    OUTPUT_NAME,
    build_metadata,
    crop_scale_of,
    parse_metadata,
)

DEFAULT_OPSET = 17
MIN_OPSET = 17
PARITY_TOLERANCE = 1e-4


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``metadata``."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file; a missing or corrupt file is one ``LandmarkError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"{path}: ONNX model not found")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises its own DecodeError; any failure here means a bad file
        raise LandmarkError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The landmark metadata of an exported model (numbers as int/float)."""
    model = load_onnx(path)
    return parse_metadata({prop.key: prop.value for prop in model.metadata_props}, str(path))


def batchnorm_count(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "BatchNormalization" for node in model.graph.node)


def max_opset() -> int:
    """The newest opset the installed torch's TorchScript exporter supports (newer ones only warn, or fail)."""
    from torch.onnx import _constants

    return getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", DEFAULT_OPSET)


def check_opset(opset: int) -> int:
    """``opset`` if ``to_onnx`` can export it, else one ``LandmarkError`` line giving the range."""
    if not MIN_OPSET <= opset <= max_opset():
        raise LandmarkError(
            f"--opset: expected {MIN_OPSET} to {max_opset()} (the newest the installed torch exports), got {opset}"
        )
    return opset


def to_onnx(model: nn.Module, num_points: int, input_size: int, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace ``model`` (eval mode, BatchNorm folded) into an ONNX graph with a dynamic batch axis."""
    check_opset(opset)
    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter announces its own deprecation; it is the path that works offline.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, input_size, input_size),),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
            )
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    # ``view(-1, K, 2)`` leaves the output dims symbolic; state them so runtimes and readers see (N, K, 2).
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_value, dims[2].dim_value = num_points, 2
    if batchnorm_count(proto):
        raise LandmarkError(f"ONNX export left {batchnorm_count(proto)} BatchNormalization nodes unfolded")
    onnx.checker.check_model(proto)
    return proto


def parity_error(model: nn.Module, onnx_bytes: bytes, input_size: int, batch: int = 4, seed: int = 0) -> float:
    """Max abs difference between PyTorch and ONNX Runtime on a random batch (normalised coordinates)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    images = rng.uniform(-1.0, 1.0, size=(batch, 3, input_size, input_size)).astype(np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    model.train(was_training)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    return float(np.abs(actual - expected).max())


def export_model(
    model: nn.Module,
    scheme: Scheme,
    out_path: str | Path,
    crop_scale: float = DEFAULT_CROP_SCALE,
    train_config: dict | None = None,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Export, check parity against PyTorch and write ``out_path`` atomically; returns a summary dict."""
    input_size = int(model.input_size)
    proto = to_onnx(model, scheme.num_points, input_size, opset)
    set_metadata(proto, build_metadata(scheme, input_size, crop_scale, train_config))
    data = proto.SerializeToString()
    diff = parity_error(model, data, input_size)
    if not diff <= PARITY_TOLERANCE:  # also catches NaN
        raise LandmarkError(f"{out_path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {PARITY_TOLERANCE})")
    write_atomic(out_path, data)
    return {"path": str(out_path), "bytes": len(data), "opset": opset, "max_abs_diff": diff}


def export_checkpoint(
    checkpoint_path: str | Path,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    equalize_on: np.ndarray | None = None,
) -> dict[str, Any]:
    """``landmark export``: a ``.pt`` checkpoint -> an ONNX file with metadata. Dead backbone channels are
    removed first (``landmark.models.prune``: fewer channels, the same function). With ``equalize_on``, a
    batch of calibration crops, the activation ranges are equalized on them for INT8 export
    (``landmark.models.equalize``: the same function, better suited to one INT8 scale per tensor)."""
    from landmark.checkpoint import load_model
    from landmark.models.prune import remove_dead_channels

    model, scheme, state = load_model(checkpoint_path)
    remove_dead_channels(model)
    if equalize_on is not None:
        from landmark.models.equalize import equalize_activation_ranges

        equalize_activation_ranges(model, equalize_on)
    return export_model(model, scheme, out_path, crop_scale_of(state), state.get("train_config"), opset)
