# Every target sets itself up on a fresh machine: it creates .venv and installs
# fmjax with its test extra on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fmjax-installed
# The CPU flag measured to speed up XLA's convolutions here (field notes, section 3).
export XLA_FLAGS ?= --xla_cpu_experimental_ynn_fusion_type=individual_dot

BENCH_ARGS ?= --n 1024 --batch 128

.PHONY: install test test-slow lint bench-fisher data train-fashion clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests

## The tests that compile large models for minutes (DenseNet, GoogLeNet).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m slow tests

## Prepare a tensorflow-datasets copy: make data DATASET=cifar10 [DATA_DIR=...] (needs a network).
data: $(STAMP)
	@test -n "$(DATASET)" || { echo "usage: make data DATASET=cifar10 [DATA_DIR=...]"; exit 2; }
	$(BIN)/python -m pip install -q -e '.[prepare]'
	$(BIN)/python -m fmjax data prepare --dataset $(DATASET) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

## Train the small CNN on real Fashion-MNIST (apt-get install dataset-fashion-mnist).
train-fashion: $(STAMP)
	$(BIN)/python -m fmjax train --dataset fashion_mnist --model small_cnn \
	  --workdir runs/fashion_mnist-small_cnn $(TRAIN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check fmjax tests benchmarks

## Fisher throughput of ResNet20 versus a training step, one JSON line per figure.
bench-fisher: $(STAMP)
	$(BIN)/python benchmarks/bench_fisher.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
