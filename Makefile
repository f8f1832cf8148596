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

.PHONY: setup quickstart test lint format clean

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

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
