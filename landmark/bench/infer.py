"""Inference benchmark: per-face latency and batch throughput of PyTorch eager, ONNX Runtime fp32 and INT8.

For each model we export to a temporary folder (random weights are fine: timing does not depend on them),
quantize to INT8 on random or given crops, then time:

* latency at batch 1 -- p50 / p90 over ``runs`` calls after ``warmup`` calls -- with 1 and 2 threads;
* throughput at batch 8 (faces per second, from the median batch time) with the same thread counts.

Thread counts are pinned: ``torch.set_num_threads`` for PyTorch, ``intra_op_num_threads`` (and one inter-op
thread) for ONNX Runtime, with all graph optimisations on. Numbers from a machine that is doing other work
are noisy; p50 is the robust one.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from landmark.config import CONFIG_DIR
from landmark.data.schemes import scheme_for
from landmark.inference.export import export_model
from landmark.inference.predictor import onnx_backend, onnx_session, torch_backend
from landmark.models.pfld import build_pfld, load_model_config
from landmark.models.summary import count_flops, count_parameters

# (label, model YAML, width): the PFLD v1 body (plain, with the eye/mouth refiner, and with both refiners:
# the default model's body) and PFLD-v2 at the paper's 1X and 0.25X.
DEFAULT_MODELS = (
    ("PFLD 1.0", CONFIG_DIR / "models" / "pfld.yaml", 1.0),
    ("PFLD 0.25", CONFIG_DIR / "models" / "pfld.yaml", 0.25),
    ("PFLD-refine 1.0", CONFIG_DIR / "models" / "pfld_refine.yaml", 1.0),
    ("PFLD-refine 0.25", CONFIG_DIR / "models" / "pfld_refine.yaml", 0.25),
    ("PFLD-local 1.0", CONFIG_DIR / "models" / "pfld_local.yaml", 1.0),
    ("PFLD-v2 1.0", CONFIG_DIR / "models" / "pfld_v2.yaml", 1.0),
    ("PFLD-v2 0.25", CONFIG_DIR / "models" / "pfld_v2.yaml", 0.25),
)


def time_calls(run: Callable[[np.ndarray], Any], batch: np.ndarray, runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of each of ``runs`` calls of ``run(batch)``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run(batch)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        run(batch)
        times[i] = time.perf_counter() - start
    return times * 1000.0


def _load(source: str | Path | dict, width: float | None, num_points: int | None):
    """(model in eval mode, model config, state or None) from a checkpoint, a model YAML or a config dict."""
    if isinstance(source, dict):
        cfg = source
    elif Path(source).suffix == ".pt":
        from landmark.checkpoint import load_model

        model, _, state = load_model(source)
        return model, state["model_config"], state
    else:
        cfg = load_model_config(source, num_points=num_points, width=width)
    torch.manual_seed(0)
    return build_pfld(cfg).eval(), cfg, None


def benchmark_inference(
    source: str | Path | dict,
    width: float | None = None,
    num_points: int | None = None,
    label: str | None = None,
    threads: Sequence[int] = (1, 2),
    runs: int = 200,
    warmup: int = 20,
    batch: int = 8,
    int8: bool = True,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Benchmark one model: a ``.pt`` checkpoint, a model YAML (random weights) or a resolved config dict.

    ``calibration`` (N, 3, S, S) crops calibrate INT8; by default 32 random crops (fine for timing only).
    Returns model facts (params, MFLOPs, file sizes) and one timing row per (backend, threads).
    """
    from landmark.inference.quantize import quantize_int8

    model, cfg, _ = _load(source, width, num_points)
    size, points = int(cfg["input_size"]), int(cfg["num_points"])
    result: dict[str, Any] = {
        "model": label or (Path(source).stem if not isinstance(source, dict) else "model"),
        "width": float(cfg["width"]),
        "num_points": points,
        "input_size": size,
        "params": count_parameters(model),
        "mflops": round(count_flops(model, size) / 1e6, 2),
        "timings": [],
    }
    rng = np.random.default_rng(0)
    one = rng.uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    many = rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="landmark-bench-") as tmp:
        pt_path, fp32_path, int8_path = Path(tmp) / "model.pt", Path(tmp) / "model.onnx", Path(tmp) / "int8.onnx"
        torch.save(model.state_dict(), pt_path)
        export_model(model, scheme_for(points), fp32_path)
        backends: dict[str, Callable[[int], Callable]] = {
            "pytorch": lambda n: torch_backend(model, n),
            "onnx fp32": lambda n: onnx_backend(onnx_session(fp32_path, n)),
        }
        result["size_kb"] = {"pt": pt_path.stat().st_size / 1024, "onnx_fp32": fp32_path.stat().st_size / 1024}
        if int8:
            crops = calibration if calibration is not None else rng.uniform(-1, 1, (32, 3, size, size))
            quantize_int8(fp32_path, int8_path, crops.astype(np.float32))
            result["size_kb"]["onnx_int8"] = int8_path.stat().st_size / 1024
            backends["onnx int8"] = lambda n: onnx_backend(onnx_session(int8_path, n))
        torch_threads = torch.get_num_threads()
        try:
            for name, make in backends.items():
                for n in threads:
                    run = make(n)
                    latency = time_calls(run, one, runs, warmup)
                    batched = time_calls(run, many, max(20, runs // 4), max(3, warmup // 4))
                    result["timings"].append(
                        {
                            "backend": name,
                            "threads": n,
                            "p50_ms": float(np.percentile(latency, 50)),
                            "p90_ms": float(np.percentile(latency, 90)),
                            f"batch{batch}_faces_per_s": float(batch / (np.median(batched) / 1000.0)),
                        }
                    )
        finally:
            torch.set_num_threads(torch_threads)
    return result


def benchmark_default_models(**kwargs: Any) -> list[dict[str, Any]]:
    """``benchmark_inference`` on PFLD and PFLD-v2 at widths 1.0 and 0.25 (98 points, 112x112)."""
    return [benchmark_inference(path, width=width, label=label, **kwargs) for label, path, width in DEFAULT_MODELS]


def format_table(results: dict[str, Any] | list[dict[str, Any]]) -> str:
    """A plain-text table: one row per model x backend x threads, model facts on the first row of each."""
    results = [results] if isinstance(results, dict) else results
    header = (
        f"{'model':<13} {'params':>9} {'MFLOPs':>8} {'backend':<10} {'thr':>3} {'p50 ms':>7} {'p90 ms':>7} "
        f"{'b8 face/s':>9} {'file KB':>8}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        sizes = result.get("size_kb", {})
        file_kb = {"pytorch": sizes.get("pt"), "onnx fp32": sizes.get("onnx_fp32"), "onnx int8": sizes.get("onnx_int8")}
        for i, row in enumerate(result["timings"]):
            facts = f"{result['model']:<13} {result['params']:>9,} {result['mflops']:>8.1f}" if i == 0 else " " * 32
            throughput = next(v for k, v in row.items() if k.endswith("_faces_per_s"))
            size = file_kb.get(row["backend"])
            lines.append(
                f"{facts} {row['backend']:<10} {row['threads']:>3} {row['p50_ms']:>7.3f} {row['p90_ms']:>7.3f} "
                f"{throughput:>9.0f} {'-' if size is None else f'{size:.0f}':>8}"
            )
    return "\n".join(lines)


def time_in_rounds(
    contenders: dict[str, Callable[[], Any]], rounds: int, runs: int, warmup: int
) -> list[dict[str, float]]:
    """Per round, each contender's median milliseconds over ``runs`` calls (after ``warmup``), as
    ``{"NAME_p50_ms": ms}``. The contenders take turns within every round, so all of them see the same machine
    state: this machine's speed drifts by 10-20% from day to day, so only figures measured side by side in one
    run compare them."""
    return [{f"{name}_p50_ms": _p50_ms(call, runs, warmup) for name, call in contenders.items()} for _ in range(rounds)]


def _p50_ms(call: Callable[[], Any], runs: int, warmup: int) -> float:
    return float(np.median(time_calls(lambda _: call(), None, runs, warmup)))


def median_of_rounds(rows: list[dict[str, float]], name: str) -> float:
    """The median over the rounds of one contender's per-round p50 (``time_in_rounds`` rows)."""
    return float(np.median([row[f"{name}_p50_ms"] for row in rows]))


def benchmark_against_dlib(
    onnx_path: str | Path,
    dlib_model: str | Path | None = None,
    face: tuple[np.ndarray, np.ndarray] | None = None,
    rounds: int = 5,
    runs: int = 1000,
    warmup: int = 100,
) -> dict[str, Any]:
    """Per-face latency of an ONNX landmark model (ONNX Runtime, 1 thread) and of dlib's shape predictor,
    in alternating rounds (``time_in_rounds``): only a ratio measured in one run compares them. dlib's time
    (a 100 MB tree ensemble) also drifts more than ours within an hour, so take the range of a few runs.

    ``face`` is (BGR image, landmark box) for dlib (a 320 px noise image otherwise; a regression tree's cost
    does not depend on the pixels); our model gets a 112x112 crop. Returns each round's p50s and their
    medians, and ``ratio`` = ours / dlib.
    """
    from landmark.inference.dlib_predictor import DlibShapePredictor

    predictor = DlibShapePredictor(dlib_model)
    rng = np.random.default_rng(0)
    if face is None:
        face = (rng.integers(0, 256, (320, 320, 3), dtype=np.uint8), np.array([80, 80, 240, 240], np.float32))
    # Each side is timed as the model call alone: our session on a ready crop, dlib's predictor on a ready
    # RGB image and rectangle (cropping, colour conversion and reading out the points are left out of both).
    rgb, rect = cv2.cvtColor(face[0], cv2.COLOR_BGR2RGB), predictor.dlib_box(face[1])
    session = onnx_session(onnx_path, 1)
    size = session.get_inputs()[0].shape[-1]
    crop = rng.uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    ours = onnx_backend(session)
    contenders = {"ours": lambda: ours(crop), "dlib": lambda: predictor.shape_predictor(rgb, rect)}
    rows = time_in_rounds(contenders, rounds, runs, warmup)
    ours_p50, dlib_p50 = median_of_rounds(rows, "ours"), median_of_rounds(rows, "dlib")
    return {
        "model": str(onnx_path),
        "dlib_model": str(predictor.path),
        "rounds": rows,
        "ours_p50_ms": ours_p50,
        "dlib_p50_ms": dlib_p50,
        "ratio": ours_p50 / dlib_p50,
    }
