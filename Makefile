# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv and install ppgen with pinned versions (constraints.txt) first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ppgen-installed

.PHONY: setup demo test lint typecheck pytest docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,docs]"
	touch $(STAMP)

# The main job: a VAE on the embedded 8x8 digits (scikit-learn's); writes runs/vae.
demo: setup
	$(BIN)/ppgen fit vae --lr 1e-3 --steps 3000 --out runs/vae

test: setup lint typecheck pytest docs

lint: setup
	$(BIN)/ruff check ppgen tests benchmarks docs
	$(BIN)/ruff format --check ppgen tests benchmarks docs

typecheck: setup
	$(BIN)/mypy ppgen

pytest: setup
	$(BIN)/python -m pytest -q --durations=15

docs: setup
	PPGEN_SMOKE=1 $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: setup
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf docs/_build docs/jupyter_execute .pytest_cache .mypy_cache .ruff_cache
