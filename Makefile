# gliomagen: two commands do all set-up.
#   make test   create .venv if missing, install torch==2.13.0 (CPU wheel) first, then the project, run tests
#   make demo   same set-up, then the main job on the built-in phantom cohort
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
DEMO    ?= demo-out
STAMP   := $(VENV)/.gliomagen-installed

.PHONY: venv test demo lint typecheck clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first and pinned: the project's open range is then satisfied and pip never pulls CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

# the demo folder goes only when an earlier demo wrote it (scripts/demo.sh leaves a marker in it)
clean:
	if [ -f "$(DEMO)/.gliomagen-demo" ]; then rm -rf "$(DEMO)"; fi
	rm -rf .pytest_cache
