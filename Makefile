# Every target sets itself up on a fresh machine: it creates .venv and installs
# fmjax with its test extra on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extras to install; on a GPU machine: make cifar10-resnet20 EXTRAS=test,cuda12
EXTRAS ?= test
comma  := ,
STAMP  := $(VENV)/.fmjax-installed-$(subst $(comma),-,$(EXTRAS))
# The CPU flag measured to speed up XLA's convolutions here (field notes, section 3).
export XLA_FLAGS ?= --xla_cpu_experimental_ynn_fusion_type=individual_dot

BENCH_ARGS ?= --n 1024 --batch 128

.PHONY: install test test-slow lint bench-fisher data train-fashion clean offline \
        cifar10-resnet20 class-removal mask-only outliers limited-remain ratio-sweep \
        lr-ablation report compare

RUN_EXP := $(BIN)/python -m experiments.run
# Prepare a dataset with tensorflow-datasets unless it loads already (needs a network).
define need_data
	$(BIN)/python -m fmjax data check --dataset $(1) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	  || $(MAKE) data DATASET=$(1)
endef

## The offline default, the README's first command: every method removes a class of real
## Fashion-MNIST on this CPU, report and figure in runs/fashion_offline (about 20 min).
offline: $(STAMP)
	$(RUN_EXP) fashion_offline --workdir runs/fashion_offline

## Figure 2 on CIFAR-10 with ResNet20: trains (or reuses) the model, every method, 3 seeds.
cifar10-resnet20: $(STAMP)
	$(call need_data,cifar10)
	$(RUN_EXP) class_removal --dataset cifar10 --model resnet20 \
	  --workdir runs/class_removal-cifar10-resnet20

## Any of the paper's 16 pairs: make class-removal DATASET=cifar100 MODEL=googlenet
class-removal: $(STAMP)
	@test -n "$(DATASET)" -a -n "$(MODEL)" || { echo "usage: make class-removal DATASET=.. MODEL=.."; exit 2; }
	$(if $(filter tiny_imagenet,$(DATASET)),,$(call need_data,$(DATASET)))
	$(RUN_EXP) class_removal --dataset $(DATASET) --model $(MODEL) \
	  --workdir runs/class_removal-$(DATASET)-$(MODEL)

## Table 1 over Figure 2's four settings (Tiny-ImageNet must be in $$FMJAX_DATA_DIR).
mask-only: $(STAMP)
	$(call need_data,cifar10)
	$(call need_data,cifar100)
	$(call need_data,mnist)
	$(RUN_EXP) mask_only --workdir runs/mask_only

## Table 2, Figure 3, Figure 4, Figure 5 (CIFAR-10, ResNet20).
outliers limited-remain ratio-sweep lr-ablation: $(STAMP)
	$(call need_data,cifar10)
	$(RUN_EXP) $(subst -,_,$@) --workdir runs/$(subst -,_,$@)

## Rebuild a run's report and figure from its files: make report RUN=runs/fashion_offline
report: $(STAMP)
	$(BIN)/python -m experiments.report $(RUN)

## Two runs side by side: make compare A=runs/x B=runs/y
compare: $(STAMP)
	$(BIN)/python -m experiments.compare $(A) $(B)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
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
	$(BIN)/ruff check fmjax tests benchmarks experiments

## Fisher throughput of ResNet20 versus a training step, one JSON line per figure.
bench-fisher: $(STAMP)
	$(BIN)/python benchmarks/bench_fisher.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
