# Two commands on a fresh machine with Python 3.10+ and make:
#   make demo   installs (creating .venv if absent) and runs generate -> train -> eval on generated logs
#   make test   installs and runs the test suite
#   make bench-quality   every tower and ablation, 5 seeds planted + 3 MovieLens-100k -> benchmarks/quality
#   make bench-speed     examples/s of every tower against history length, tower GFLOP/s -> benchmarks/speed
#   make bench-nextitem  next-item HR@10 / NDCG@10 / MRR@20 of every model, 3 seeds, ML-100k -> benchmarks/nextitem
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?=
STAMP  := $(VENV)/.installed
CONFIG_ARG := $(if $(CONFIG),--config $(CONFIG),)

.PHONY: demo test install clean bench-quality bench-speed bench-nextitem

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements/cpu.txt requirements/torchrec.txt requirements/test.txt pyproject.toml setup.py
	$(BIN)/pip install --quiet -r requirements/cpu.txt -r requirements/test.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/torchrec.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import fbgemm_gpu, torchrec; print('installed: torchrec', torchrec.__version__)"
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/pmx-generate $(CONFIG_ARG)
	$(BIN)/pmx-train $(CONFIG_ARG)

test: install
	$(BIN)/python -m pytest

bench-quality: install
	$(BIN)/python -m pyramid_mixer.jobs.bench.quality

bench-nextitem: install
	$(BIN)/python -m pyramid_mixer.jobs.bench.next_item

bench-speed: install
	$(BIN)/python -m pyramid_mixer.jobs.bench.speed

clean:
	rm -rf runs data .pytest_cache
