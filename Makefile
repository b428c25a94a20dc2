# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create (or reuse) .venv and install the package with its dev tools; reinstalling happens only
# when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The embedded pipeline on synthetic data: model summary, data, training, evaluation, ONNX export, a rendered
# driver video through the headless demo, and the driver-monitoring events scored against the video's truth.
# It starts by deleting $(QUICK): every file there is regenerated, and the commands refuse to overwrite a run.
QUICK := runs/quickstart

run: $(STAMP)
	rm -rf $(QUICK)
	$(BIN)/landmark info --config configs/models/pfld.yaml
	$(BIN)/landmark make-synthetic --out $(QUICK)/data --n 1200 --seed 0
	$(BIN)/landmark train --config configs/train/synthetic_wflw.yaml --set data.root=$(QUICK)/data --out $(QUICK)/train
	$(BIN)/landmark eval --checkpoint $(QUICK)/train/best.pt --data-format wflw --data $(QUICK)/data \
		--report $(QUICK)/eval
	$(BIN)/landmark export --checkpoint $(QUICK)/train/best.pt --out $(QUICK)/model.onnx
	$(BIN)/landmark make-synthetic --video $(QUICK)/driver.mp4 --timeline $(QUICK)/driver.json --seconds 40 --seed 1
	$(BIN)/landmark demo --source $(QUICK)/driver.mp4 --model $(QUICK)/model.onnx --headless \
		--output $(QUICK)/demo.mp4 --log $(QUICK)/demo.jsonl
	$(BIN)/landmark dms-eval --timeline $(QUICK)/driver.json --log $(QUICK)/demo.jsonl --json $(QUICK)/dms_eval.json
	@echo "outputs: $(QUICK)/ (data/contact_sheet.png, train/, eval/report.md, eval/ced.png, model.onnx, demo.mp4, demo.jsonl)"

test: $(STAMP)
	$(BIN)/ruff check landmark tests demo
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check landmark tests demo
	$(BIN)/ruff format --check landmark tests demo

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
