"""Checkpoints from elsewhere: missing, not a checkpoint, truncated, or holding code -- one line each, no traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from landmark.checkpoint import load_checkpoint, save_checkpoint
from landmark.errors import LandmarkError


class Payload:
    """Unpickling this would call a function: weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("this ran",))


def test_missing_text_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(LandmarkError, match=r"nothing\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(LandmarkError, match=r"notes\.pt: "):
        load_checkpoint(text)
    garbage = tmp_path / "garbage.pt"  # the weights-only unpickler rejects it, but it holds no code either
    garbage.write_text("garbage\n")
    with pytest.raises(LandmarkError, match=r"garbage\.pt: not a readable PyTorch checkpoint \(Unsupported operand"):
        load_checkpoint(garbage)
    save_checkpoint({"model": {"w": torch.zeros(3)}, "model_config": {}, "scheme": "300w68"}, tmp_path / "ok.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "ok.pt").read_bytes()[:100])
    with pytest.raises(LandmarkError, match=r"truncated\.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(truncated)
    save_checkpoint({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(LandmarkError, match=r"other\.pt: not a landmark checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    refused = r"evil\.pt: refused to load: it holds more than weights \(a reference to (builtins\.)?print\)"
    with pytest.raises(LandmarkError, match=refused):
        load_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out


def test_saving_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run" / "last.pt"
    save_checkpoint({"model": {}, "model_config": {}, "scheme": "wflw98", "epoch": 1}, path)
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):  # unpicklable: fails mid-write ...
        save_checkpoint({"model": {}, "model_config": {}, "scheme": "wflw98", "epoch": 2, "bad": lambda: 0}, path)
    assert load_checkpoint(path)["epoch"] == 1  # ... and the previous file is untouched
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_written_checkpoints_and_reports_are_readable_by_others(tmp_path: Path) -> None:
    from landmark.files import write_atomic

    save_checkpoint({"model": {}, "model_config": {}, "scheme": "wflw98", "epoch": 1}, tmp_path / "last.pt")
    write_atomic(tmp_path / "report.json", "{}\n")
    for name in ("last.pt", "report.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_unusable_output_paths_are_one_line_errors_naming_them(tmp_path: Path) -> None:
    from landmark.files import check_writable, make_folder, write_atomic

    afile, folder = tmp_path / "afile", tmp_path / "pred"
    afile.write_text("keep\n")
    folder.mkdir()
    state = {"model": {}, "model_config": {}, "scheme": "wflw98"}
    with pytest.raises(LandmarkError, match=r"pred: is a folder, expected a file path$"):
        write_atomic(folder, "{}\n")
    with pytest.raises(LandmarkError, match=r"afile/x: .*afile is a file, not a folder$"):
        write_atomic(afile / "x", "{}\n")
    with pytest.raises(LandmarkError, match=r"pred: is a folder, expected a file path$"):
        save_checkpoint(state, folder)
    with pytest.raises(LandmarkError, match=r"afile/run/last\.pt: .*afile is a file, not a folder$"):
        save_checkpoint(state, afile / "run" / "last.pt")
    with pytest.raises(LandmarkError, match=r"--out .*afile: is a file, expected a folder$"):
        make_folder(afile, "--out")
    with pytest.raises(LandmarkError, match=r"--json .*pred: is a folder, expected a file path$"):
        check_writable(folder, "--json")
    with pytest.raises(LandmarkError, match=r"--out .*afile/x: .*afile is a file, not a folder$"):
        check_writable(afile / "x", "--out", folder=True)
    if Path("/proc/self").is_dir():  # a folder nobody may create files in
        with pytest.raises(LandmarkError, match=r"^/proc/x: cannot write in /proc \("):
            write_atomic("/proc/x", "{}\n")
        with pytest.raises(LandmarkError, match=r"^--log /proc/x\.jsonl: cannot write in /proc \("):
            check_writable("/proc/x.jsonl", "--log")
    check_writable(tmp_path / "new" / "report.json", "--json")  # a path that can be written passes ...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "pred"]  # ... and the checks created nothing
    assert afile.read_text() == "keep\n" and not any(folder.iterdir())
