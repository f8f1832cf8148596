# winnow: `make quickstart` and `make test` work on a fresh machine (they create .venv on first use).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here so pip takes the local CPU wheel where one is on disk instead of a multi-GB CUDA build;
# override on a GPU machine, e.g. `make setup TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# Everything runs offline: models come from local folders or packages, never from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export HAYSTACK_TELEMETRY_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup quickstart test lint format clean gpu-train

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-base
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

## setup: create .venv and install winnow with its dev extras
setup: $(VENV)/.installed-dev

## quickstart: index the bundled sample corpus, search it, rerank, print both side by side (offline)
quickstart: $(VENV)/.installed-base
	$(BIN)/winnow quickstart

## test: lint, the import contracts (pyproject's [tool.importlinter]), then the default test suite (slow tests
## excluded; `make test PYTEST_ARGS="-m slow"` for those)
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## gpu-train: the general stage on a CUDA GPU (benchmarks/quality/README.md, "The general stage on a GPU"): mine,
## train, export fp16 shards, evaluate zero-shot against the shipped model, all under OUT. `make gpu-train OUT=dir
## [DATA=../shared/datasets] [ARGS="--smoke" | ARGS="--bundle"]`. Uses .venv when there is one, else python3 (a
## GPU machine's own Python with winnow installed), and installs nothing.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-train:
	@test -n "$(OUT)" || { echo "usage: make gpu-train OUT=dir [DATA=datasets_dir] [ARGS=...]" >&2; exit 2; }
	$(GPU_PYTHON) benchmarks/quality/gpu_train.py --out "$(OUT)" $(if $(DATA),--datasets "$(DATA)") $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
