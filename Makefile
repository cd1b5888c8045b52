# `make demo`: the whole FastLightGen compression of the shipped Shapes teacher (quick preset, ~10-15 min on
# 2 CPU cores) into runs/fastlightgen/, ending with the report's path and headline.   `make test`: the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-teacher test install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned here (a CPU build on the dev/CI machines); the package itself asks for torch>=2.4
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/fastlight run configs/shapes/fastlightgen.yaml

# samples of the shipped teacher only (20 s)
demo-teacher: $(STAMP)
	$(BIN)/fastlight demo --out runs/demo

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -x -q

clean:
	rm -rf $(VENV) runs/demo runs/fastlightgen
