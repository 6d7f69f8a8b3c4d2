# Two commands do everything on a fresh machine:
#   make demo   create .venv, install, train and save the embedded default (copy task, no wandb), print samples
#   make test   create .venv, install with test tools, run the test suite
# Then `source .venv/bin/activate` (README commands assume it; main.py and bench also find .venv alone).
#   make notebook      JupyterLab on notebooks/explore.ipynb
#   make demo-figures  rerun the demo and write docs/demo-figures.json (the README's demo figures)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test venv dev bench notebook demo-figures clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: venv
	$(BIN)/python main.py --config=test-synth --no-wandb --save

test: dev
	$(BIN)/python -m pytest -q tests

bench: dev
	$(BIN)/python -m bench

notebook: dev
	$(BIN)/jupyter lab notebooks/explore.ipynb

demo-figures: venv
	$(BIN)/python scripts/demo_figures.py

clean:
	rm -rf $(VENV) .pytest_cache
