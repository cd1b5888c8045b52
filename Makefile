# `make demo`: sample the shipped Shapes teacher into runs/demo/.   `make test`: the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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
	$(BIN)/fastlight demo --out runs/demo

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -x -q

clean:
	rm -rf $(VENV) runs/demo
