# Every target sets itself up on a fresh machine: it creates .venv and installs
# fmjax with its test extra on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fmjax-installed
# The CPU flag measured to speed up XLA's convolutions here (field notes, section 3).
export XLA_FLAGS ?= --xla_cpu_experimental_ynn_fusion_type=individual_dot

BENCH_ARGS ?= --n 1024 --batch 128

.PHONY: install test lint bench-fisher clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check fmjax tests benchmarks

## Fisher throughput of ResNet20 versus a training step, one JSON line per figure.
bench-fisher: $(STAMP)
	$(BIN)/python benchmarks/bench_fisher.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
