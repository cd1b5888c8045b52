# `make demo`: the whole FastLightGen compression of the shipped Shapes teacher pipeline (a stock WanPipeline
# folder: latent transformer, Shapes VAE, phrase text encoder), light decoder included, on the real-model path
# (quick preset, <= 15 min on 2 CPU cores) into runs/shapes_pipeline/, ending with the report's path and
# headline; its data (train-stream clips encoded by the pipeline's VAE) are made once into runs/shapes_pipeline_data.
# `make demo-pixel`: the earlier pixel-space demo (configs/shapes/fastlightgen.yaml).   `make test`: the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-pixel demo-teacher test install clean

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
	test -f runs/shapes_pipeline_data/index.json || OMP_NUM_THREADS=2 $(BIN)/python -m fastlight.shapes.latent_data \
		runs/shapes_pipeline_data --pipeline shapes-pipeline --num-clips 1024 --threads 2
	OMP_NUM_THREADS=2 $(BIN)/fastlight run configs/shapes/pipeline.yaml

demo-pixel: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/fastlight run configs/shapes/fastlightgen.yaml

# samples of the shipped teacher only (20 s)
demo-teacher: $(STAMP)
	$(BIN)/fastlight demo --out runs/demo

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -x -q

clean:
	rm -rf $(VENV) runs/demo runs/fastlightgen runs/shapes_pipeline runs/shapes_pipeline_data
