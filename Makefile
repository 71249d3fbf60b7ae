# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	# CPU build of torch first, from local disk; a plain `torch` requirement would pull CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/noble serve --host $(HOST) --port $(PORT)

# Two workers, one test file each at a time (module fixtures are built once); the tests that time themselves run
# alone afterwards, so a busy neighbour cannot push them over their bounds.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=30 -n 2 --dist loadfile -m "not serial" tests
	$(BIN)/python -m pytest -q --durations=5 -m serial tests

bench: $(STAMP)
	$(BIN)/python benchmarks/datagen.py --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
