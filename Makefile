# Every target sets itself up on a fresh machine: it creates .venv and installs
# fmjax with its test extra on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extras to install; on a GPU machine: make cifar10-resnet20 EXTRAS=test,cuda12
EXTRAS ?= test
comma  := ,
STAMP  := $(VENV)/.fmjax-installed-$(subst $(comma),-,$(EXTRAS))

BENCH_ARGS ?= --n 1024 --batch 128

# Every command gets the data directory, when one is given: make cifar10-resnet20 DATA_DIR=/x
DATA_ARGS = $(if $(DATA_DIR),--data-dir $(DATA_DIR))
# Overrides of an experiment's config, the same code path shrunk or changed:
#   make cifar10-resnet20 SET="unlearn.ratio=0.04 seeds=0,1"
# SMOKE=1: the experiment's own datasets and models by overrides (experiments.run --smoke:
# one seed, one epoch on 320 examples, cheap scoring; minutes on a CPU; CI runs it).
SET_ARGS = $(if $(SMOKE),--smoke) $(foreach s,$(SET),--set $(s))
# DEVICES=N splits every batch across N devices (default: all); UNITS=K runs up to K units'
# fine-tunings that share an update rule as one stacked program (--units-per-program).
# Where a target's run goes: runs/<name>[-smoke] unless WORKDIR is given.
workdir = $(or $(WORKDIR),runs/$(1)$(if $(SMOKE),-smoke))

.PHONY: install test test-slow lint bench-fisher data train-fashion clean offline \
        cifar10-resnet20 class-removal mask-only outliers limited-remain ratio-sweep \
        lr-ablation report compare test-prepare test-scale test-long successors privacy privacy-cifar10 salun-cifar10 \
        bench-scale bench-peers bench-memory mutants

RUN_EXP := $(BIN)/python -m experiments.run $(if $(DEVICES),--devices $(DEVICES)) \
           $(if $(UNITS),--units-per-program $(UNITS))
# Prepare a dataset with tensorflow-datasets unless it loads already (needs a network).
define need_data
	$(BIN)/python -m fmjax data check --dataset $(1) $(DATA_ARGS) \
	  || $(MAKE) data DATASET=$(1)
endef

# Fashion-MNIST for the offline targets: Debian's package dataset-fashion-mnist, installed
# here when missing (as root, else through passwordless sudo; `apt-get update` first when
# the package is unknown); where neither works, one line says what to run.
define need_fashion
	@$(BIN)/python -m fmjax data check --dataset fashion_mnist $(DATA_ARGS) >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null || { echo "error: Fashion-MNIST is missing and apt-get is \
	not here; put the four *-ubyte.gz files in $${FMJAX_DATA_DIR:-~/fmjax_data}/fashion_mnist/"; \
	  exit 2; }; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "error: Fashion-MNIST is missing; run: sudo apt-get install \
	dataset-fashion-mnist"; exit 2; fi; \
	  echo "Fashion-MNIST is missing: installing Debian's dataset-fashion-mnist"; \
	  $$SUDO apt-cache show dataset-fashion-mnist >/dev/null 2>&1 || $$SUDO apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	    >/dev/null; }
	@$(BIN)/python -m fmjax data check --dataset fashion_mnist $(DATA_ARGS)
endef

## The offline default, the README's first command: every method removes a class of real
## Fashion-MNIST on this CPU, report and figure in runs/fashion_offline (about 20 min).
offline: $(STAMP)
	$(need_fashion)
	$(RUN_EXP) fashion_offline --workdir $(call workdir,fashion_offline) $(DATA_ARGS) $(SET_ARGS)

## The paper's method and its six successors under the field's protocol (class removal and
## random 10% forgetting), real Fashion-MNIST on this CPU: runs/successors (about 30 min).
## LR_GRID="salun=0.1,0.03 ..." replaces the default learning-rate sweeps.
successors: $(STAMP)
	$(need_fashion)
	$(RUN_EXP) successors --workdir $(call workdir,successors) $(DATA_ARGS) $(SET_ARGS) \
	  $(foreach g,$(LR_GRID),--lr-grid $(g))

## Per-example forgetting quality from ensembles (16 models per method, 32 of Retrain, one
## forget set), real Fashion-MNIST on this CPU: runs/privacy. K=16 stacks 16 seeds a program
## (for an accelerator: on this CPU one model already fills both cores, so K=1 is faster).
privacy: $(STAMP)
	$(need_fashion)
	$(RUN_EXP) privacy --workdir $(call workdir,privacy) $(DATA_ARGS) $(SET_ARGS) \
	  --units-per-program $(or $(K),1)

## The same on CIFAR-10 (ResNet-18; MODEL=resnet20), 128 models per method, K=32 a program
## (a GPU machine; not run on this CPU): runs/privacy_cifar10.
privacy-cifar10: $(STAMP)
	$(call need_data,cifar10)
	$(RUN_EXP) privacy_cifar10 --workdir $(call workdir,privacy_cifar10) $(DATA_ARGS) \
	  $(SET_ARGS) $(if $(MODEL),--model $(MODEL)) --units-per-program $(or $(K),32)

## SalUn's CIFAR-10 protocol as its released code runs it: its hold-out split and forget
## indices, ResNet-18 for 182 epochs with its augmentation, seeds 2, 3, 4 (a GPU, a network).
salun-cifar10: $(STAMP)
	$(call need_data,cifar10)
	$(RUN_EXP) salun_recipe --workdir $(call workdir,salun_recipe) $(DATA_ARGS) \
	  $(SET_ARGS) $(foreach g,$(LR_GRID),--lr-grid $(g))

## Figure 2 on CIFAR-10 with ResNet20: trains (or reuses) the model, every method, 3 seeds.
cifar10-resnet20: $(STAMP)
	$(call need_data,cifar10)
	$(RUN_EXP) class_removal --dataset cifar10 --model resnet20 $(DATA_ARGS) $(SET_ARGS) \
	  --workdir $(call workdir,class_removal-cifar10-resnet20)

## Any of the paper's 16 pairs: make class-removal DATASET=cifar100 MODEL=googlenet
class-removal: $(STAMP)
	@test -n "$(DATASET)" -a -n "$(MODEL)" || { echo "usage: make class-removal DATASET=.. MODEL=.."; exit 2; }
	$(if $(filter tiny_imagenet,$(DATASET)),,$(call need_data,$(DATASET)))
	$(RUN_EXP) class_removal --dataset $(DATASET) --model $(MODEL) $(DATA_ARGS) $(SET_ARGS) \
	  --workdir $(call workdir,class_removal-$(DATASET)-$(MODEL))

## Table 1 over Figure 2's four settings (Tiny-ImageNet must be in $$FMJAX_DATA_DIR).
mask-only: $(STAMP)
	$(call need_data,cifar10)
	$(call need_data,cifar100)
	$(call need_data,mnist)
	$(RUN_EXP) mask_only --workdir $(call workdir,mask_only) $(DATA_ARGS) $(SET_ARGS)

## Table 2, Figure 3, Figure 4, Figure 5 (CIFAR-10, ResNet20).
outliers limited-remain ratio-sweep lr-ablation: $(STAMP)
	$(call need_data,cifar10)
	$(RUN_EXP) $(subst -,_,$@) --workdir $(call workdir,$(subst -,_,$@)) $(DATA_ARGS) \
	  $(SET_ARGS)

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
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not prepare and not scale and not long" tests

## Whole runs killed at every phase boundary and resumed, damaged work-directory files,
## and every model of the zoo compiled (CI runs it after `make test`; about 8 minutes).
test-long: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "long and not slow" tests

## Whole runs on 1, 2 and 8 forced CPU devices, the command line's --devices, and 2 real
## processes joined over loopback (CI runs it after `make test`; about 2 minutes).
test-scale: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "scale and not slow" tests

## The data-preparation paths with TensorFlow installed: tiny archives in the official
## formats through tensorflow-datasets' own download-and-prepare, and `make
## cifar10-resnet20 SMOKE=1` end to end on them (CI runs it after `make test`).
test-prepare: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[prepare]'
	$(BIN)/python -m pytest -q -n 2 -m "prepare and not slow" tests

## The tests that compile large models for minutes (DenseNet, GoogLeNet).
test-slow: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[prepare]'
	$(BIN)/python -m pytest -q -n 2 -m slow tests

## Mutation testing (cosmic-ray) of fmjax/methods, procedures.py, readouts.py and fisher/:
## SAMPLE mutants per scope (default 12; about 40 minutes here), each against its scope's
## tests; kill rates and survivors in runs/mutants/report.md. Not in CI.
mutants: $(STAMP)
	$(BIN)/python -m pip install -q 'cosmic-ray>=8.7'
	$(BIN)/python -m tests.mutants --workdir $(call workdir,mutants) $(if $(SAMPLE),--sample $(SAMPLE))

## Prepare a tensorflow-datasets copy: make data DATASET=cifar10 [DATA_DIR=...] (needs a network,
## or the official archives in ARCHIVES=dir or <data dir>/tfds/downloads/manual).
data: $(STAMP)
	@test -n "$(DATASET)" || { echo "usage: make data DATASET=cifar10 [DATA_DIR=...]"; exit 2; }
	$(BIN)/python -m pip install -q -e '.[prepare]'
	$(BIN)/python -m fmjax data prepare --dataset $(DATASET) $(DATA_ARGS) \
	  $(if $(ARCHIVES),--archives $(ARCHIVES))

## Train the small CNN on real Fashion-MNIST (installs dataset-fashion-mnist when missing).
train-fashion: $(STAMP)
	$(need_fashion)
	$(BIN)/python -m fmjax train --dataset fashion_mnist --model small_cnn \
	  --workdir $(call workdir,fashion_mnist-small_cnn) $(DATA_ARGS) $(TRAIN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check fmjax tests benchmarks experiments

## Fisher throughput of ResNet20 versus a training step, one JSON line per figure.
bench-fisher: $(STAMP)
	$(BIN)/python benchmarks/bench_fisher.py $(BENCH_ARGS)

## fmjax's Fisher against PyTorch peers (torch.func, BackPACK) on the same ResNet20 with the
## same weights, back to back in one run: one table with ratios. Installs the `bench` extra.
## TORCH pins the PyTorch build, resolved together with the extra so that nothing upgrades it:
## the figures used a CPU build (where the default index serves CUDA builds, point
## PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index).
PEERS_ARGS ?= --n 1024 --batch 128
TORCH ?= torch==2.13.0
bench-peers: $(STAMP)
	$(BIN)/python -m pip install -q '$(TORCH)' -e '.[bench]'
	$(BIN)/python benchmarks/bench_peers.py $(PEERS_ARGS)

## The Fisher pass and training over 1, 2, 4 and 8 devices (forced CPU host devices here;
## SCALE_ARGS="--cpu-devices 0" on a machine with several GPUs) and the Fisher's peak memory
## at N = 1k, 4k, 16k examples: JSON lines and a table.
SCALE_ARGS ?=
## The scoring programs' compiled memory (XLA's memory analysis) for the paper's 16 pairs:
## make bench-memory MEMORY_ARGS="--pairs cifar100/googlenet --passes 'true fisher'"
bench-memory: $(STAMP)
	$(BIN)/python benchmarks/bench_memory.py $(MEMORY_ARGS)

bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
