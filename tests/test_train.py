"""Training: it learns, resumes exactly, refuses bad configs and mismatched checkpoints, runs under torchrun."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from landmark.checkpoint import load_checkpoint, save_checkpoint
from landmark.cli import main
from landmark.config import CONFIG_DIR
from landmark.data.readers import read_wflw
from landmark.data.synthetic import write_synthetic_wflw
from landmark.errors import ConfigError, LandmarkError
from landmark.train.config import resolve_train_config
from landmark.train.trainer import lr_factor, set_cpu_threads, train

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC_CONFIG = REPO / "configs" / "train" / "synthetic_wflw.yaml"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_wflw(root, n=120, seed=0, test_fraction=0.25)
    return root


def tiny_config(root: Path, *extra: str) -> dict:
    overrides = [f"data.root={root}", "data.workers=0", "train.batch_size=16", "model.width=0.25", *extra]
    return resolve_train_config(SYNTHETIC_CONFIG, overrides)


def write_300w_folder(synthetic_root: Path, folder: Path, n: int) -> Path:
    """The first ``n`` synthetic training faces as a 300-W folder: each image with its 1-based ``.pts``."""
    folder.mkdir(parents=True)
    for i, record in enumerate(read_wflw(synthetic_root, "train")[:n]):
        (folder / f"face{i}.png").symlink_to(record.image_path)
        rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in record.points)
        (folder / f"face{i}.pts").write_text(f"version: 1\nn_points: {len(record.points)}\n{{\n{rows}\n}}\n")
    return folder


@pytest.fixture(scope="module")
def five_faces(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_300w_folder(synthetic_root, tmp_path_factory.mktemp("five") / "faces", 5)


def test_short_training_lowers_validation_nme(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synthetic_root, "train.epochs=6", "optim.lr=0.005")
    result = train(cfg, tmp_path / "run", progress=False)
    before, after = result["history"][0]["nme_mean"], result["history"][-1]["nme_mean"]
    assert after < 0.5 * before, (before, after)
    for name in ("best.pt", "last.pt", "metrics.csv", "config.yaml"):
        assert (tmp_path / "run" / name).is_file()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 6 and state["scheme"] == "wflw98"
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 1 + 6


@pytest.mark.parametrize("model_config", ["pfld_refine.yaml", "pfld_local.yaml"])
def test_refined_model_trains_and_reloads(synthetic_root: Path, tmp_path: Path, model_config: str) -> None:
    cfg = tiny_config(synthetic_root, f"model.config=../models/{model_config}", "train.epochs=3", "optim.lr=0.005")
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["history"][-1]["nme_mean"] < 0.5 * result["history"][0]["nme_mean"]
    from landmark.checkpoint import load_model

    model, scheme, _ = load_model(tmp_path / "run" / "best.pt")
    assert len(model.refiner.regions) == 3 and scheme.num_points == 98
    assert (model.local is not None) == (model_config == "pfld_local.yaml")


def test_cpu_threads_leave_room_for_the_data_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    try:
        assert set_cpu_threads(workers=2, world_size=1) == 6 == torch.get_num_threads()
        assert set_cpu_threads(workers=2, world_size=2) == 2
        assert set_cpu_threads(workers=16, world_size=1) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice wins
        assert set_cpu_threads(workers=2, world_size=1) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_resume_gives_the_same_weights(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synthetic_root, "train.epochs=2", "train.ema=0.9")
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "split", progress=False, stop_after=1)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    train(cfg, tmp_path / "split", resume=tmp_path / "split", progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("model", "ema", "aux"):
        for name, value in straight[key].items():
            torch.testing.assert_close(split[key][name], value, atol=1e-6, rtol=1e-5, msg=f"{key}.{name}")


def test_resume_refuses_a_checkpoint_with_other_landmarks(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(synthetic_root, "train.epochs=1")
    train(cfg, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    state["model_config"] = {**state["model_config"], "num_points": 68}
    save_checkpoint(state, tmp_path / "run" / "last.pt")
    with pytest.raises(LandmarkError, match="checkpoint predicts 68 points but the config asks for 98"):
        train(cfg, tmp_path / "run", resume=tmp_path / "run", progress=False)


def test_resume_refuses_a_changed_model_or_optimizer(five_faces: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(five_faces, "data.format=300w", "train.epochs=2"), run, progress=False, stop_after=1)
    # the weights would not fit (a size mismatch) / SGD would look for momentum in AdamW's state (a KeyError)
    # ... / the optimiser state would hold other parameters (a ValueError from deep inside torch)
    changes = [
        ("model.width=0.5", r"model\.width"),
        ("optim.name=sgd", r"optim\.name"),
        ("train.trainable=[fc]", r"train\.trainable"),
    ]
    for change, key in changes:
        cfg = tiny_config(five_faces, "data.format=300w", "train.epochs=2", change)
        with pytest.raises(LandmarkError, match=rf"made with a different model/optimizer config \({key}\)"):
            train(cfg, run, resume=run, progress=False)


def test_last_batch_of_one_face_is_dropped_and_a_small_set_trains_as_one_batch(
    five_faces: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 5 faces in batches of 4 left a batch of one face, which BatchNorm refuses while training
    cfg = tiny_config(five_faces, "data.format=300w", "train.epochs=1", "train.batch_size=4")
    with caplog.at_level("INFO", logger="landmark.train.trainer"):
        train(cfg, tmp_path / "four", progress=False)
    assert "1 steps per epoch" in caplog.text
    # without data.val_fraction a 300-W run validates on its training faces: say so
    assert "no data.val_fraction: validating on the training faces themselves" in caplog.text
    caplog.clear()
    cfg = tiny_config(five_faces, "data.format=300w", "train.epochs=1", "train.batch_size=64")
    with caplog.at_level("INFO", logger="landmark.train.trainer"):
        train(cfg, tmp_path / "all", progress=False)
    assert "train.batch_size 64 is more than the 5 training faces: training with batches of 5" in caplog.text
    assert load_checkpoint(tmp_path / "all" / "last.pt")["epoch"] == 1


def test_too_few_faces_to_train_or_to_split(synthetic_root: Path, tmp_path: Path) -> None:
    one_face = write_300w_folder(synthetic_root, tmp_path / "one", 1)
    cfg = tiny_config(one_face, "data.format=300w", "data.val_fraction=0.1")
    with pytest.raises(ConfigError, match=r"data\.val_fraction: 0\.1 of 1 faces leaves no validation face"):
        train(cfg, tmp_path / "split", progress=False)
    with pytest.raises(LandmarkError, match=r"data\.root: 1 training face\(s\) in .*; training needs at least 2"):
        train(tiny_config(one_face, "data.format=300w"), tmp_path / "single", progress=False)


def test_eval_refuses_an_empty_split_and_a_negative_seed(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    one_face = write_300w_folder(synthetic_root, tmp_path / "one", 1)
    assert main(["eval", "--data-format", "300w", "--data", str(one_face), "--val-fraction", "0.5"]) == 2
    err = capsys.readouterr().err  # it read "... but DIR has -point annotations"
    message = f"{one_face}: --val-fraction 0.5 leaves no validation face (splitting needs 2 or more)"
    assert err == f"landmark eval: error: {message}\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data-format", "300w", "--data", str(one_face), "--split-seed", "-5"])
    assert exit_info.value.code == 2
    assert "argument --split-seed: expected an integer >= 0, got '-5'" in capsys.readouterr().err


def test_model_init_starts_from_a_checkpoint_with_a_fresh_schedule(synthetic_root: Path, tmp_path: Path) -> None:
    source = train(tiny_config(synthetic_root, "train.epochs=2", "train.ema=0.9"), tmp_path / "source", progress=False)
    cfg = tiny_config(synthetic_root, "train.epochs=1", f"model.init={tmp_path / 'source'}")  # its last.pt
    tuned = train(cfg, tmp_path / "tuned", progress=False)
    # validation before the first step scores the source's EMA weights exactly
    assert tuned["history"][0]["nme_mean"] == pytest.approx(source["history"][-1]["nme_mean"], abs=1e-6)
    assert load_checkpoint(tmp_path / "tuned" / "last.pt")["epoch"] == 1  # its own schedule, not the source's

    wrong_width = tiny_config(synthetic_root, "train.epochs=1", "model.width=0.5", f"model.init={tmp_path / 'x.pt'}")
    with pytest.raises(LandmarkError, match=r"x\.pt: checkpoint not found"):
        train(wrong_width, tmp_path / "bad", progress=False)
    wrong_width["model"]["init"] = str(tmp_path / "source" / "last.pt")
    with pytest.raises(LandmarkError, match=r"last\.pt: model\.init weights do not fit model\.config"):
        train(wrong_width, tmp_path / "bad", progress=False)
    state = load_checkpoint(tmp_path / "source" / "last.pt")
    state["model_config"] = {**state["model_config"], "num_points": 68}
    save_checkpoint(state, tmp_path / "other.pt")
    cfg["model"]["init"] = str(tmp_path / "other.pt")
    with pytest.raises(LandmarkError, match=r"other\.pt: model\.init predicts 68 points but the config asks for 98"):
        train(cfg, tmp_path / "bad", progress=False)


def test_init_skip_and_trainable_retrain_only_a_resized_refiner(synthetic_root: Path, tmp_path: Path) -> None:
    # The latency experiment of docs/results.md: the eye/mouth refiner at another patch size (its fc no longer
    # fits) retrained on top of a frozen model, which must come out bit for bit as model.init left it.
    source = tiny_config(synthetic_root, "model.config=../models/pfld_refine.yaml", "train.epochs=1")
    train(source, tmp_path / "source", progress=False)
    small = yaml.safe_load((CONFIG_DIR / "models" / "pfld_refine.yaml").read_text())
    small["backbone"] = str(CONFIG_DIR / "models" / small["backbone"])
    small["refine"]["patch_size"] = 16
    (tmp_path / "p16.yaml").write_text(yaml.safe_dump(small))
    init = f"model.init={tmp_path / 'source' / 'last.pt'}"
    cfg = tiny_config(
        synthetic_root,
        f"model.config={tmp_path / 'p16.yaml'}",
        init,
        "model.init_skip=[refiner.fc]",
        "train.trainable=[refiner]",
        "train.epochs=1",
    )
    train(cfg, tmp_path / "p16", progress=False)
    before = load_checkpoint(tmp_path / "source" / "last.pt")
    before = before["ema"] if before.get("ema") is not None else before["model"]
    after = load_checkpoint(tmp_path / "p16" / "last.pt")["model"]
    frozen = [name for name in after if not name.startswith("refiner.")]
    assert frozen and all(torch.equal(after[name], before[name]) for name in frozen)  # BatchNorm statistics too
    assert after["refiner.fc.weight"].shape != before["refiner.fc.weight"].shape
    assert not torch.equal(after["refiner.convs.0.0.weight"], before["refiner.convs.0.0.weight"])  # it learned

    with pytest.raises(LandmarkError, match=r"last\.pt: model\.init weights do not fit model\.config"):
        train(
            tiny_config(synthetic_root, f"model.config={tmp_path / 'p16.yaml'}", init), tmp_path / "bad", progress=False
        )
    with pytest.raises(LandmarkError, match=r"model\.init_skip: 'refiner\.fcc' names no tensor of the model"):
        train({**cfg, "model": {**cfg["model"], "init_skip": ["refiner.fcc"]}}, tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match=r"train\.trainable: 'refinr' is not a module of the model \(its modules: "):
        train({**cfg, "train": {**cfg["train"], "trainable": ["refinr"]}}, tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match=r"train\.trainable: expected at least one module name, or null"):
        tiny_config(synthetic_root, "train.trainable=[]")
    with pytest.raises(ConfigError, match=r"model\.init_skip: expected a list of names, got \[1\]"):
        tiny_config(synthetic_root, "model.init_skip=[1]")


def test_eval_refuses_a_checkpoint_of_another_scheme(synthetic_root: Path, tmp_path: Path, synthetic_face) -> None:
    image, points = synthetic_face  # one 68-point face; write its 300-W .pts (1-based) beside it
    faces68 = image.parent
    rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
    image.with_suffix(".pts").write_text(f"version: 1\nn_points: 68\n{{\n{rows}\n}}\n")
    cfg = tiny_config(synthetic_root, "train.epochs=1")
    train(cfg, tmp_path / "run", progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "landmark", "eval", "--checkpoint", str(tmp_path / "run" / "best.pt"),
         "--data-format", "300w", "--data", str(faces68)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "predicts 98 points (wflw98)" in result.stderr and "68-point annotations" in result.stderr


def test_eval_writes_json_report_and_ced(synthetic_root: Path, tmp_path: Path) -> None:
    import json

    cfg = tiny_config(synthetic_root, "train.epochs=1")
    train(cfg, tmp_path / "run", progress=False)
    out = subprocess.run(
        [sys.executable, "-m", "landmark", "eval", "--checkpoint", str(tmp_path / "run" / "best.pt"),
         "--data-format", "wflw", "--data", str(synthetic_root), "--json", "-", "--report", str(tmp_path / "rep")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    for key in ("nme_mean", "nme_median", "fr10", "auc10", "n", "subsets", "fallbacks"):
        assert key in result
    assert result["n"] == 30
    assert len(result["per_landmark"]) == 98
    for name in ("report.md", "ced.png", "results.json"):
        assert (tmp_path / "rep" / name).is_file()


# --- configs ---------------------------------------------------------------------------------------------


def write_config(tmp_path: Path, change: dict) -> Path:
    cfg = yaml.safe_load(SYNTHETIC_CONFIG.read_text())
    cfg["model"]["config"] = str(REPO / "configs" / "models" / "pfld.yaml")
    cfg["augment"] = str(REPO / "configs" / "augment" / "default.yaml")
    for dotted, value in change.items():
        section, key = dotted.split(".")
        cfg.setdefault(section, {})[key] = value
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train.epochz": 3}, r"train\.yaml: train: unknown key 'epochz'"),
        ({"train.epochs": "ten"}, r"train\.yaml: train\.epochs: expected integer, got 'ten'"),
        ({"train.amp": 1}, r"train\.amp: expected bool, got 1"),
        ({"optim.name": "lion"}, r"optim\.name: expected one of adam, adamw, sgd, got 'lion'"),
        ({"train.ema": 1.5}, r"train\.ema: expected a decay in \(0, 1\)"),
        ({"model.config": "missing.yaml"}, r"missing\.yaml: config file not found"),
        ({"loss.name": "hinge"}, r"train\.yaml: loss\.name"),
        ({"data.format": "coco"}, r"data\.format: expected one of wflw, 300w, csv, json"),
        ({"data.box_source": "haar"}, r"data\.box_source: expected one of points, box, detector, got 'haar'"),
        ({"data.detector": "hog"}, r"data\.detector: expected one of yunet, haar, mediapipe, dlib, got 'hog'"),
        ({"data.landmark_box_share": 1.5}, r"data\.landmark_box_share: expected a fraction in \[0, 1\], got 1\.5"),
        ({"data.landmark_box_share": 0.5, "data.box_source": "points"}, r"landmark_box_share: needs data\.box_source"),
        ({"schedule.min_lr": -1}, r"train\.yaml: schedule\.min_lr: expected a number >= 0, got -1"),
        ({"schedule.min_lr": 0.1}, r"schedule\.min_lr: expected at most optim\.lr \(0\.005\), got 0\.1"),
        ({"schedule.gamma": -1}, r"schedule\.gamma: expected a decay factor in \(0, 1\] such as 0\.1, got -1"),
        ({"schedule.warmup_epochs": -1}, r"schedule\.warmup_epochs: expected a number in \[0, train\.epochs = 30\]"),
        ({"schedule.warmup_epochs": 31}, r"schedule\.warmup_epochs: expected a number in \[0, train\.epochs = 30\]"),
        ({"schedule.milestones": ["a"]}, r"schedule\.milestones: expected a list of epochs \(integers >= 1\)"),
        ({"schedule.milestones": [[1]]}, r"schedule\.milestones: expected a list of epochs \(integers >= 1\)"),
        ({"train.grad_clip": -1}, r"train\.grad_clip: expected a maximum gradient norm > 0, or 0 or null for none"),
        ({"optim.weight_decay": -1}, r"optim\.weight_decay: expected a number >= 0, got -1"),
        ({"optim.momentum": -1}, r"optim\.momentum: expected a number in \(0, 1\) such as 0\.9, got -1"),
        ({"train.seed": -1}, r"train\.seed: expected an integer >= 0, got -1"),
        ({"data.split_seed": -1}, r"data\.split_seed: expected an integer >= 0, got -1"),
        (
            {"data.extra_root": "/x.csv", "data.extra_share": 1.5},
            r"data\.extra_share: expected a fraction in \(0, 1\), got 1\.5",
        ),
        ({"data.extra_format": "xml"}, r"data\.extra_format: expected one of wflw, 300w, csv, json"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_train_config(write_config(tmp_path, change))


def test_extra_faces_make_up_their_share_of_each_epoch(synthetic_root: Path, five_faces: Path) -> None:
    """data.extra_root: every main face once an epoch, plus a fresh draw of extra faces at data.extra_share."""
    from landmark.train.trainer import Distributed, build_datasets, make_train_loader

    extra = ["data.extra_format=300w", f"data.extra_root={five_faces}", "data.extra_share=0.04"]
    cfg = tiny_config(synthetic_root, *extra)
    train_set, _, n_extra = build_datasets(cfg)
    n_main = len(train_set) - n_extra
    assert n_extra == 5 and n_main == len(build_datasets(tiny_config(synthetic_root))[0])
    draws = []
    for epoch in (0, 1, 0):
        indices = list(make_train_loader(train_set, cfg, Distributed(0, 1), epoch, n_extra).sampler)
        assert sorted(i for i in indices if i < n_main) == list(range(n_main))  # each main face once
        draws.append(sorted(i for i in indices if i >= n_main))
    assert len(draws[0]) == round(n_main * 0.04 / 0.96) < n_extra
    assert draws[0] == draws[2] and draws[0] != draws[1]  # fixed by (seed, epoch), new each epoch


def test_extra_faces_refuse_distributed_training(
    synthetic_root: Path, five_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landmark.train import trainer

    monkeypatch.setattr(trainer, "setup_distributed", lambda _: (trainer.Distributed(0, 2, 0), torch.device("cpu")))
    cfg = tiny_config(synthetic_root, "data.extra_format=300w", f"data.extra_root={five_faces}")
    with pytest.raises(LandmarkError, match=r"data\.extra_root: extra faces train in one process only"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_grad_clip_zero_or_null_means_no_clipping(tmp_path: Path) -> None:
    for off in (0, None):
        assert resolve_train_config(write_config(tmp_path, {"train.grad_clip": off}))["train"]["grad_clip"] == off


def test_minimal_yaml_anywhere_uses_the_builtin_model_config(tmp_path: Path) -> None:
    minimal = tmp_path / "x.yaml"
    minimal.write_text("data:\n  root: /some/where\n")  # the default model config, not ../models beside x.yaml
    assert resolve_train_config(minimal)["model"]["config"] == str(CONFIG_DIR / "models" / "pfld.yaml")
    minimal.write_text("model:\n  config: models/mine.yaml\ndata:\n  root: /some/where\n")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'models' / 'mine.yaml'}: config file not found")):
        resolve_train_config(minimal)  # a path the user wrote stays relative to their YAML


def test_set_overrides_and_their_errors(tmp_path: Path) -> None:
    cfg = resolve_train_config(SYNTHETIC_CONFIG, ["data.root=/some/where", "train.epochs=3", "optim.lr=1e-4"])
    assert cfg["data"]["root"] == "/some/where" and cfg["train"]["epochs"] == 3 and cfg["optim"]["lr"] == 1e-4
    with pytest.raises(ConfigError, match=r"--set trainepochs: expected section\.key=value"):
        resolve_train_config(SYNTHETIC_CONFIG, ["trainepochs"])
    with pytest.raises(ConfigError, match=r"train: unknown key 'epoch'"):
        resolve_train_config(SYNTHETIC_CONFIG, ["train.epoch=3"])


def test_box_source_detector_crops_training_faces_around_detections(
    synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from landmark.data.crop import face_box_from_points
    from landmark.detect import HaarDetector
    from landmark.train import trainer

    class NoFaces(HaarDetector):  # finds nothing: every face falls back to its landmark box
        def detect(self, image):
            return np.zeros((0, 5), np.float32)

    built = []
    monkeypatch.setattr(trainer, "build_detector", lambda *args, **kw: built.append((args, kw)) or NoFaces())
    cfg = tiny_config(synthetic_root, "data.box_source=detector")
    with caplog.at_level("INFO", logger="landmark.train.trainer"):
        train_set, val_set, _ = trainer.build_datasets(cfg)
    # the default detector (YuNet) with its photo settings, as landmark eval --box detector runs it
    assert built == [(("yunet", None), {"photos": True})] * 2
    assert train_set.box_source == val_set.box_source == "box"
    for record in train_set.records[:5] + val_set.records[:5]:  # WFLW's own boxes were replaced
        np.testing.assert_allclose(record.box, face_box_from_points(record.points))
    n = len(train_set)
    assert f"train: the yunet detector missed {n} of {n} faces (landmark box used)" in caplog.text


def test_box_source_detector_refuses_a_missing_detector_model(synthetic_root: Path, tmp_path: Path) -> None:
    from landmark.train.trainer import build_datasets

    missing = tmp_path / "face_detector.tflite"
    cfg = tiny_config(
        synthetic_root, "data.box_source=detector", "data.detector=mediapipe", f"data.detector_model={missing}"
    )
    with pytest.raises(LandmarkError, match="face_detector.tflite"):
        build_datasets(cfg)  # rather than training on the Haar detector's boxes instead


def test_training_faces_are_detected_without_opencvs_thread_pool(
    synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OpenCV's thread pool does not survive fork(): once the Haar detector had run with it in the trainer,
    # the DataLoader workers forked afterwards could hang in their first OpenCV call (a race: it stopped a
    # real 300-W run before its first epoch). Detection must run with the pool off and restore the setting.
    import cv2

    from landmark.detect import HaarDetector
    from landmark.train import trainer

    threads_seen = []

    class CountingDetector(HaarDetector):
        def detect(self, image):
            threads_seen.append(cv2.getNumThreads())
            return np.zeros((0, 5), np.float32)

    monkeypatch.setattr(trainer, "build_detector", lambda *args, **kw: CountingDetector())
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)  # as on a 2-core machine
    try:
        trainer.build_datasets(tiny_config(synthetic_root, "data.box_source=detector"))
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
    assert threads_seen and set(threads_seen) == {1}  # OpenCV reports 1 thread when told 0: sequential


def test_cosine_schedule_with_warmup() -> None:
    schedule = {"name": "cosine", "warmup_epochs": 1, "min_lr": 0.0}
    factors = [lr_factor(step, 10, schedule, epochs=5, base_lr=1.0) for step in range(50)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] < 0.01
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))


def test_torchrun_two_cpu_processes(synthetic_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         "-m", "landmark", "train", "--config", str(SYNTHETIC_CONFIG), "--no-progress", "--out", str(tmp_path / "ddp"),
         "--set", f"data.root={synthetic_root}", "--set", "data.workers=0", "--set", "train.epochs=1",
         "--set", "train.batch_size=8", "--set", "model.width=0.25"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("validation NME") == 1  # rank 0 alone reports
    state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert state["epoch"] == 1
    assert not any(name.startswith("module.") for name in state["model"])


def test_train_refuses_an_out_folder_that_holds_a_run_unless_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from landmark import cli

    run = tmp_path / "keep"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss\n1,0.5\n")
    args = ["train", "--config", str(SYNTHETIC_CONFIG), "--set", f"data.root={tmp_path / 'nodata'}"]
    assert cli.main([*args, "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run (metrics.csv)" in err[0]
    assert f"--resume {run}" in err[0] and "another --out" in err[0]
    assert [p.name for p in run.iterdir()] == ["metrics.csv"]
    assert (run / "metrics.csv").read_text() == "epoch,train_loss\n1,0.5\n"
    assert cli.main([*args, "--resume", str(run)]) == 2  # allowed: it stops later, at the missing data
    assert "already holds a run" not in capsys.readouterr().err
