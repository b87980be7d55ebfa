"""Every option of `python -m fmjax train` and `unlearn` reaches the run's config.

Each case runs the real command in a subprocess with ``--print-config`` (the
config the run would record in its config.json, nothing written) and checks
the fields its options set. A last test fails when an option is added
without a case here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from fmjax import __main__ as cli
from fmjax import checkpoints, methods, training

TRAIN = ["train", "--dataset", "digits", "--model", "small_cnn", "--workdir", "{tmp}/t"]
UNLEARN = ["unlearn", "--checkpoint", "{tmp}/trained", "--workdir", "{tmp}/u"]

# (name, argv, {dotted config path: expected value}); options named in argv are
# counted as covered.
CASES = [
    ("train schedule", TRAIN + ["--epochs", "8", "--batch-size", "32", "--lr", "0.2",
                                "--decay-epochs", "3,6.5", "--weight-decay", "5e-4"],
     {"epochs": 8, "batch_size": 32, "lr": 0.2, "decay_epochs": [3.0, 6.5],
      "weight_decay": 5e-4}),
    ("train data", TRAIN + ["--augment", "--seed", "7", "--train-limit", "500",
                            "--noise-fraction", "0.3", "--noise-seed", "4", "--quiet",
                            "--data-dir", "{tmp}/data"],
     {"augment": True, "seed": 7, "train_limit": 500, "noise_fraction": 0.3, "noise_seed": 4}),
    ("train optimiser", TRAIN + ["--decay-factor", "0.5", "--momentum", "0.8", "--debug",
                                 "--holdout-seed", "1"],
     {"decay_factor": 0.5, "momentum": 0.8, "augment": False, "holdout_seed": 1}),
    ("unlearn core", UNLEARN + ["--method", "fisher_mask", "--forget-class", "3",
                                "--forget-class", "5", "--ratio", "0.1", "--epochs", "4",
                                "--compress-epochs", "2.5", "--lr", "0.03", "--batch-size", "16",
                                "--momentum", "0.5", "--weight-decay", "0.001",
                                "--freeze-mask", "--seed", "9", "--split", "salun"],
     {"method.name": "fisher_mask", "forget_classes": [3, 5], "method.ratio": 0.1,
      "method.epochs": 4, "method.compress_epochs": 2.5, "method.lr": 0.03,
      "method.batch_size": 16, "method.momentum": 0.5, "method.weight_decay": 0.001,
      "method.freeze_mask": True, "seed": 9, "split": "salun"}),
    ("unlearn data", UNLEARN + ["--method", "fisher_noise", "--no-remain", "--epochs", "0",
                                "--outliers", "--quiet", "--data-dir", "{tmp}/data",
                                "--alpha", "2e-6", "--score-limit", "300"],
     {"method.name": "fisher_noise", "no_remain": True, "forget_classes": None,
      "method.epochs": 0, "method.alpha": 2e-6, "method.score_limit": 300}),
    ("unlearn remain limit", UNLEARN + ["--method", "finetune", "--remain-limit", "50",
                                        "--lr", "compressed"],
     {"remain_limit": 50, "method.lr": "compressed", "forget_classes": [0]}),
    ("unlearn fisher scoring", UNLEARN + ["--method", "fisher_mask", "--maskable", "kernels",
                                          "--weighting", "mean", "--score-batch-size", "64",
                                          "--fisher-chunk", "8"],
     {"method.maskable": "kernels", "method.weighting": "mean", "method.score_batch_size": 64,
      "method.fisher_chunk": 8, "method.ratio": 0.04}),   # digits: the MNIST-like R
    ("unlearn integrated gradients", UNLEARN + ["--method", "grad_mask", "--ig-steps", "7",
                                                "--ig-limit", "40"],
     {"method.ig_steps": 7, "method.ig_limit": 40}),
    ("unlearn influence", UNLEARN + ["--method", "influence", "--damping", "0.5",
                                     "--cg-iters", "3", "--hessian-examples", "99",
                                     "--hessian", "remain"],
     {"method.damping": 0.5, "method.cg_iters": 3, "method.hessian_examples": 99,
      "method.hessian": "remain"}),
    # --keep-checkpoints is the default, which config.json leaves out (older runs match).
    ("unlearn mia on", UNLEARN + ["--method", "retrain", "--mia", "--keep-checkpoints"],
     {"mia": True}),
    ("unlearn readouts", UNLEARN + ["--method", "retrain", "--eval-limit", "123", "--no-mia",
                                    "--relearn-epochs", "2", "--relearn-threshold", "0.7"],
     {"eval_limit": 123, "mia": False, "relearn_epochs": 2, "relearn_threshold": 0.7,
      "method.lr": "original", "method.epochs": None}),
    ("unlearn ensemble member", UNLEARN + ["--method", "retrain", "--forget-seed", "3",
                                           "--confidences", "--eval-epochs", "last",
                                           "--test-limit", "500", "--confidence-epochs", "all",
                                           "--no-keep-checkpoints"],
     {"forget_seed": 3, "confidences": True, "eval_epochs": "last", "test_limit": 500,
      "confidence_epochs": "all", "keep_checkpoints": False}),
    ("unlearn random subset, ssd", UNLEARN + [
        "--method", "ssd", "--forget-random", "0.2", "--alpha", "3", "--dampening", "0.5",
        "--importance", "fisher", "--importance-batch-size", "64"],
     {"forget_random": 0.2, "forget_classes": None, "method.alpha": 3.0,
      "method.dampening": 0.5, "method.importance": "fisher",
      "method.importance_batch_size": 64}),
    ("unlearn scrub", UNLEARN + [
        "--method", "scrub", "--lr", "0.003", "--temperature", "2", "--kl-weight", "0.1",
        "--ce-weight", "0.9", "--max-epochs", "1", "--forget-batch-size", "64"],
     {"method.lr": 0.003, "method.temperature": 2.0, "method.kl_weight": 0.1,
      "method.ce_weight": 0.9, "method.max_epochs": 1, "method.forget_batch_size": 64,
      "method.batch_size": 256, "method.weight_decay": 5e-4}),   # its authors' recipe
    ("unlearn salun", UNLEARN + ["--method", "salun", "--fraction", "0.3"],
     {"method.fraction": 0.3, "method.lr": 0.013, "method.batch_size": 256}),
    ("unlearn l1_sparse", UNLEARN + ["--method", "l1_sparse", "--gamma", "0.001"],
     {"method.gamma": 0.001}),
    ("unlearn neggrad_plus", UNLEARN + ["--method", "neggrad_plus", "--beta", "0.9",
                                        "--forget-batch-size", "32"],
     {"method.beta": 0.9, "method.forget_batch_size": 32, "method.batch_size": None}),
]


@pytest.fixture
def trained_config(tmp_path):
  """A training run's config.json (what `unlearn --checkpoint` reads to resolve defaults)."""
  config = training.default_config("digits", "small_cnn", epochs=1)
  checkpoints.claim_workdir(tmp_path / "trained", dataclasses.asdict(config))
  return tmp_path


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


@pytest.mark.parametrize("name,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_options_reach_the_config(trained_config, name, argv, expected):
  tmp = trained_config
  args = [a.replace("{tmp}", str(tmp)) for a in argv] + ["--print-config"]
  out = subprocess.run([sys.executable, "-m", "fmjax", *args], capture_output=True, text=True,
                       env=os.environ, timeout=120)
  assert out.returncode == 0, out.stderr
  config = json.loads(out.stdout)
  for path, value in expected.items():
    assert _get(config, path) == pytest.approx(value) if isinstance(value, float) else \
        _get(config, path) == value, (path, _get(config, path), value)
  assert not (tmp / "t").exists() and not (tmp / "u").exists()   # nothing written


def _options(argv):
  """``{command: its --options}`` of the parser built for ``argv``."""
  sub = next(a for a in cli.parser(argv)._actions if a.dest == "command")
  return {command: {o for action in p._actions for o in action.option_strings
                    if o.startswith("--")} for command, p in sub.choices.items()}


def test_every_option_has_a_case():
  """Every option of train and of unlearn with EACH method is exercised by a case."""
  covered = {a for _, argv, _ in CASES for a in argv if a.startswith("--")}
  covered |= {"--help", "--print-config", "--checkpoint", "--workdir", "--dataset", "--model",
              "--allow-partial",   # not a config field: tests/test_errors.py runs it
              "--devices",   # not a config field: test_sharding.py runs it on 2 devices
              "--import"}   # tests/test_extension.py runs it
  assert _options(None)["train"] - covered == set(), "train options without a test case"
  for method in methods.registry():
    options = _options(["unlearn", "--method", method])["unlearn"]
    assert options - covered == set(), f"unlearn --method {method}: options without a case"


def test_every_settings_field_is_an_option():
  """A new field of the run's config or of a method appears in the CLI by itself, under
  that method only."""
  from fmjax.unlearning import UnlearnConfig

  def dests(argv, command):
    sub = next(a for a in cli.parser(argv)._actions if a.dest == "command")
    return {a.dest for a in sub.choices[command]._actions}
  run_fields = {f.name for f in dataclasses.fields(UnlearnConfig)} - {
      "checkpoint", "method", "forget_classes"}
  for method, cls in methods.registry().items():
    got = dests(["unlearn", "--method", method], "unlearn")
    assert {f.name for f in dataclasses.fields(cls)} | run_fields <= got, method
  assert "fraction" not in dests(["unlearn", "--method", "fisher_mask"], "unlearn")
  assert {f.name for f in dataclasses.fields(training.TrainConfig)} <= dests(None, "train")


def test_method_help_shows_its_own_recipe(capsys):
  with pytest.raises(SystemExit):
    cli.main(["unlearn", "--method", "salun", "--help"])
  text = " ".join(capsys.readouterr().out.split())
  assert "salun settings" in text and "--fraction FLOAT" in text and "(default: 0.013)" in text
  assert "--ig-steps" not in text and "neggrad_plus" in text   # the epilog lists methods


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "two"], "argument --epochs: expected int or none, got 'two'"),
    (["--weighting", "median"], "expected one of ['sum', 'mean'], got 'median'"),
    (["--lr", "fast"],
     "argument --lr: expected 'compressed' or 'original' or float, got 'fast'"),
])
def test_bad_option_values_name_the_option_and_the_type(trained_config, capsys, argv, message):
  args = [a.replace("{tmp}", str(trained_config)) for a in UNLEARN]
  with pytest.raises(SystemExit) as e:
    cli.main(args + ["--method", "fisher_mask", *argv])
  assert e.value.code == 2 and message in capsys.readouterr().err


def test_debug_prints_the_traceback(tmp_path, capsys):
  argv = ["unlearn", "--checkpoint", str(tmp_path / "none"), "--method", "finetune",
          "--workdir", str(tmp_path / "u")]
  assert cli.main(argv) == 2
  assert "Traceback" not in capsys.readouterr().err
  with pytest.raises(FileNotFoundError, match="holds no training run"):
    cli.main(argv + ["--debug"])
