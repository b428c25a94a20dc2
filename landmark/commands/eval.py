"""``landmark eval``: NME / FR / AUC of a model on a test split, with a CED plot and a Markdown report."""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from landmark.commands import non_negative_int, positive_int
from landmark.commands.output import write_json
from landmark.config import default_model_path
from landmark.data.crop import face_box_from_points
from landmark.data.perturb import PERTURBATIONS, perturbed_records
from landmark.data.schemes import Scheme
from landmark.detect import DETECTORS, build_detector, close_detector
from landmark.detect.calibration import boxes_from_detector
from landmark.errors import LandmarkError
from landmark.files import check_writable, make_folder, write_atomic
from landmark.inference.dlib_predictor import DlibShapePredictor
from landmark.inference.metadata import crop_scale_of
from landmark.progress import progress_bar
from landmark.train.metrics import plot_ced, source_subsets


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate NME / FR / AUC on a test split")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="model checkpoint (.pt) or exported model (.onnx, e.g. an INT8 export, run by ONNX Runtime as "
        "deployed); default: the package's default model",
    )
    parser.add_argument(
        "--dlib",
        nargs="?",
        const="",
        metavar="MODEL.dat",
        help="score dlib's shape predictor instead (default: the 68-point model of the face_recognition_models "
        "package; pip install -e '.[dlib]'); --box detector --detector dlib gives it its own HOG boxes",
    )
    parser.add_argument("--data-format", required=True, choices=["wflw", "300w", "csv", "json"])
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="WFLW folder (its test list) or list file, 300-W folder, or CSV/JSON file",
    )
    parser.add_argument(
        "--box",
        choices=["gt", "detector"],
        default="gt",
        help="crop around the landmark box (gt) or the shipped face detector's box (detector)",
    )
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        help="detector for --box detector (default: yunet; haar only when yunet cannot be loaded)",
    )
    parser.add_argument("--detector-model", help="model file of the detector (mediapipe needs one; yunet ships)")
    parser.add_argument("--flip-test", action="store_true", help="average with the prediction on the mirrored crop")
    parser.add_argument(
        "--perturb",
        choices=tuple(PERTURBATIONS),
        metavar="NAME",
        help="change every photo first, as a driver camera's conditions would, before detector and model see it: "
        + "; ".join(f"{name} ({what})" for name, (what, _) in PERTURBATIONS.items()),
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="evaluate only the held-out validation part of DATA, split as a training config with "
        "data.val_fraction F does (e.g. 0.1 for configs/train/300w_68.yaml)",
    )
    parser.add_argument(
        "--split-seed", type=non_negative_int, default=0, help="data.split_seed of that config (default 0)"
    )
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed samples instead of stopping")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON ('-' for standard output)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write report.md, ced.png and results.json here")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the CLI builds every command's parser, and the runtime commands
    # (predict, demo) must start without loading torch.
    import torch
    from torch.utils.data import DataLoader

    from landmark.checkpoint import load_model
    from landmark.data.dataset import LandmarkDataset, build_records
    from landmark.train.evaluate import evaluate_predictions, predict_loader

    if args.dlib is not None and args.checkpoint:
        raise LandmarkError("--dlib and --checkpoint: choose one model to evaluate")
    if args.json and args.json != "-":  # output paths are checked before the evaluation, not after it
        check_writable(args.json, "--json")
    if args.report:
        check_writable(args.report, "--report", folder=True)
    if args.dlib is not None:
        dlib_model = DlibShapePredictor(args.dlib or None)
        scheme, source = dlib_model.scheme, f"dlib:{dlib_model.path}"
    elif args.checkpoint is not None and args.checkpoint.suffix.lower() == ".onnx":
        model, scheme, crop_scale = onnx_model(args.checkpoint)
        source = str(args.checkpoint)
    else:
        checkpoint = args.checkpoint or default_model_path((".pt",))
        model, scheme, state = load_model(checkpoint)
        crop_scale = crop_scale_of(state)
        source = str(checkpoint)
    data_cfg = {"format": args.data_format, "root": str(args.data), "skip_invalid": args.skip_invalid}
    if args.val_fraction is not None:
        data_cfg.update(val_fraction=args.val_fraction, split_seed=args.split_seed)
    records = build_records(data_cfg, "val" if args.val_fraction is not None else "test")
    if not records and args.val_fraction is not None:  # the split of a one-face folder
        raise LandmarkError(
            f"{args.data}: --val-fraction {args.val_fraction} leaves no validation face (splitting needs 2 or more)"
        )
    if not records:
        raise LandmarkError(f"{args.data}: no faces to evaluate")
    counts = {len(r.points) for r in records}
    if counts != {scheme.num_points}:
        raise LandmarkError(
            f"{source} predicts {scheme.num_points} points ({scheme.name}) but {args.data} has "
            f"{'/'.join(map(str, sorted(counts)))}-point annotations: use a model of that scheme"
        )
    photo_names = [record.image_path.name for record in records]  # --perturb's copies have names of their own
    with ExitStack() as stack:  # --perturb's copies of the photos live until the predictions are made
        if args.perturb:
            progress = partial(progress_bar, desc=f"perturbing photos ({args.perturb})", unit="face")
            records = stack.enter_context(perturbed_records(records, args.perturb, progress))
        fallbacks = 0
        if args.box == "detector":
            detector = build_detector(args.detector, args.detector_model, photos=True)
            progress = partial(progress_bar, desc="detecting faces", unit="face")
            try:
                records, fallbacks = boxes_from_detector(records, detector, progress=progress)
            finally:
                close_detector(detector)
        if args.dlib is not None:
            out = predict_with_dlib(dlib_model, records, args.box == "detector", args.flip_test)
        else:
            dataset = LandmarkDataset(
                records,
                scheme,
                model.input_size,
                crop_scale,
                augment=None,
                box_source="box" if args.box == "detector" else "points",
            )
            loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=0)
            with torch.inference_mode():
                out = predict_loader(
                    model,
                    progress_bar(loader, desc="evaluating", unit="batch"),
                    scheme,
                    torch.device("cpu"),
                    args.flip_test,
                )
    result = evaluate_predictions(out["pred"], out["gt"], out["attributes"], scheme)
    names = [photo_names[i] for i in out["index"]]
    result["subsets"].update(source_subsets(np.asarray(result["per_face_nme"]), names))
    result.update(
        {
            "fallbacks": fallbacks,
            "box": args.box,
            "flip_test": args.flip_test,
            "perturb": args.perturb,
            "checkpoint": source,
            "data": str(args.data),
            "scheme": scheme.name,
        }
    )

    if args.json == "-":
        write_json("-", result)
    else:
        print(format_summary(result))
        if args.json:
            write_json(args.json, result)
            print(f"wrote {args.json}")
    if args.report:
        write_report(result, np.asarray(result["per_face_nme"]), args.report)
        if args.json != "-":
            print(f"report: {args.report / 'report.md'}  (ced.png, results.json)")
    return 0


def onnx_model(path: Path) -> tuple[Any, Scheme, float]:
    """An exported model as ``(module, scheme, crop scale)``: ONNX Runtime (one thread, as the demo runs it)
    behind the ``nn.Module`` interface that ``predict_loader`` calls, so an INT8 export is scored as deployed.
    The module class is made here because torch is imported lazily: this command module loads without it."""
    import torch
    from torch import nn

    from landmark.inference.predictor import LandmarkPredictor

    predictor = LandmarkPredictor.from_path(path, threads=1)

    class OnnxModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_size = predictor.input_size

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(predictor.backend(images.numpy()))

    return OnnxModule(), predictor.scheme, predictor.crop_scale


def predict_with_dlib(model: DlibShapePredictor, records: list, use_box: bool, flip_test: bool) -> dict:
    """``predict_loader``'s output for dlib's shape predictor: points in image pixels (NME does not mind the
    unit), from each record's detector box (``use_box``) or its landmark box."""
    from landmark.data.dataset import load_image

    pred = []
    for record in progress_bar(records, desc="evaluating dlib", unit="face"):
        box = record.box if use_box else face_box_from_points(record.points)
        pred.append(model.predict(load_image(record.image_path), box, flip_test))
    return {
        "pred": np.stack(pred),
        "gt": np.stack([record.points for record in records]),
        "attributes": np.stack([record.attributes for record in records]),
        "index": np.arange(len(records)),
    }


def format_summary(result: dict) -> str:
    lines = [
        f"{result['n']} faces  ({result['scheme']}, box {result['box']}"
        + (f", {result['fallbacks']} fell back to the landmark box" if result["box"] == "detector" else "")
        + (", flip test" if result["flip_test"] else "")
        + (f", photos perturbed: {result['perturb']}" if result.get("perturb") else "")
        + ")",
        f"{'normalisation':<14} {'NME mean':>9} {'median':>8} {'FR@10%':>7} {'AUC@10%':>8}",
    ]
    for mode, s in result["normalisations"].items():
        lines.append(
            f"{mode:<14} {100 * s['nme_mean']:>8.2f}% {100 * s['nme_median']:>7.2f}% "
            f"{100 * s['fr10']:>6.2f}% {s['auc10']:>8.4f}"
        )
    if result.get("regions"):
        lines.append("per region     " + "  ".join(f"{k} {100 * v:.2f}%" for k, v in result["regions"].items()))
    for name, s in result["subsets"].items():
        lines.append(
            f"  subset {name:<12} n={s['n']:<5} NME {100 * s['nme_mean']:.2f}%  FR {100 * s['fr10']:.2f}%  "
            f"AUC {s['auc10']:.4f}"
        )
    return "\n".join(lines)


def write_report(result: dict, nme: np.ndarray, folder: Path) -> None:
    make_folder(folder, "--report")
    plot_ced({f"{result['scheme']} (n={result['n']})": nme}, folder / "ced.png")
    write_atomic(folder / "results.json", json.dumps(result, indent=2) + "\n")
    worst = np.argsort(result["per_landmark"])[::-1][:5]
    lines = [
        "# Landmark evaluation",
        "",
        f"- model: `{result['checkpoint']}`",
        f"- data: `{result['data']}` ({result['n']} faces, {result['scheme']})",
        f"- face box: {result['box']}"
        + (f" ({result['fallbacks']} fallbacks to the landmark box)" if result["box"] == "detector" else ""),
        f"- flip test: {'yes' if result['flip_test'] else 'no'}",
        f"- photos perturbed: {result.get('perturb') or 'no'}",
        "",
        "| normalisation | NME mean | NME median | FR@10% | AUC@10% |",
        "|---|---|---|---|---|",
    ]
    for mode, s in result["normalisations"].items():
        lines.append(
            f"| {mode} | {100 * s['nme_mean']:.2f}% | {100 * s['nme_median']:.2f}% | "
            f"{100 * s['fr10']:.2f}% | {s['auc10']:.4f} |"
        )
    if result["subsets"]:
        lines += ["", "| subset | n | NME | FR@10% | AUC@10% |", "|---|---|---|---|---|"]
        for name, s in result["subsets"].items():
            lines.append(
                f"| {name} | {s['n']} | {100 * s['nme_mean']:.2f}% | {100 * s['fr10']:.2f}% | {s['auc10']:.4f} |"
            )
    if result.get("regions"):
        lines += ["", "| region | " + " | ".join(result["regions"]) + " |", "|---" * (len(result["regions"]) + 1) + "|"]
        lines.append("| NME | " + " | ".join(f"{100 * v:.2f}%" for v in result["regions"].values()) + " |")
    lines += [
        "",
        "Hardest landmarks (mean inter-ocular NME): "
        + ", ".join(f"#{i} {100 * result['per_landmark'][i]:.2f}%" for i in worst),
        "",
        "![CED curve](ced.png)",
        "",
    ]
    write_atomic(folder / "report.md", "\n".join(lines))
