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
from fmjax import checkpoints, training

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
    ("train optimiser", TRAIN + ["--decay-factor", "0.5", "--momentum", "0.8", "--debug"],
     {"decay_factor": 0.5, "momentum": 0.8, "augment": False}),
    ("unlearn core", UNLEARN + ["--method", "fisher_mask", "--forget-class", "3",
                                "--forget-class", "5", "--ratio", "0.1", "--epochs", "4",
                                "--compress-epochs", "2.5", "--lr", "0.03", "--batch-size", "16",
                                "--freeze-mask", "--seed", "9"],
     {"method": "fisher_mask", "forget_classes": [3, 5], "settings.ratio": 0.1, "epochs": 4,
      "compress_epochs": 2.5, "lr": 0.03, "batch_size": 16, "freeze_mask": True, "seed": 9}),
    ("unlearn data", UNLEARN + ["--method", "fisher_noise", "--no-remain", "--epochs", "0",
                                "--outliers", "--quiet", "--data-dir", "{tmp}/data"],
     {"method": "fisher_noise", "no_remain": True, "forget_classes": None, "epochs": 0}),
    ("unlearn remain limit", UNLEARN + ["--method", "finetune", "--remain-limit", "50",
                                        "--lr", "compressed"],
     {"remain_limit": 50, "lr": "compressed", "forget_classes": [0]}),
    ("unlearn scoring", UNLEARN + ["--method", "grad_mask", "--maskable", "kernels",
                                   "--weighting", "mean", "--score-limit", "300",
                                   "--ig-steps", "7", "--ig-limit", "40",
                                   "--noise-alpha", "2e-6", "--score-batch-size", "64",
                                   "--fisher-chunk", "8"],
     {"settings.maskable": "kernels", "settings.weighting": "mean", "settings.score_limit": 300,
      "settings.ig_steps": 7, "settings.ig_limit": 40, "settings.noise_alpha": 2e-6,
      "settings.score_batch_size": 64, "settings.fisher_chunk": 8}),
    ("unlearn influence", UNLEARN + ["--method", "influence", "--influence-damping", "0.5",
                                     "--influence-iters", "3", "--influence-examples", "99",
                                     "--influence-hessian", "remain"],
     {"settings.influence_damping": 0.5, "settings.influence_iters": 3,
      "settings.influence_examples": 99, "settings.influence_hessian": "remain"}),
    ("unlearn mia on", UNLEARN + ["--method", "retrain", "--mia"], {"mia": True}),
    ("unlearn readouts", UNLEARN + ["--method", "retrain", "--eval-limit", "123", "--no-mia",
                                    "--relearn-epochs", "2", "--relearn-threshold", "0.7"],
     {"eval_limit": 123, "mia": False, "relearn_epochs": 2, "relearn_threshold": 0.7}),
    ("unlearn random subset, ssd", UNLEARN + [
        "--method", "ssd", "--forget-random", "0.2", "--ssd-alpha", "3", "--ssd-lambda", "0.5",
        "--ssd-importance", "fisher", "--ssd-batch-size", "64"],
     {"forget_random": 0.2, "forget_classes": None, "settings.ssd_alpha": 3.0,
      "settings.ssd_lambda": 0.5, "settings.ssd_importance": "fisher",
      "settings.ssd_batch_size": 64}),
    ("unlearn successors' training", UNLEARN + [
        "--method", "scrub", "--lr", "0.003", "--salun-fraction", "0.3",
        "--scrub-temperature", "2", "--scrub-kl-weight", "0.1", "--scrub-ce-weight", "0.9",
        "--scrub-max-epochs", "1", "--scrub-forget-batch-size", "64", "--l1-gamma", "0.001",
        "--neggrad-beta", "0.9", "--neggrad-forget-batch-size", "32"],
     {"lr": 0.003, "settings.salun_fraction": 0.3, "settings.scrub_temperature": 2.0,
      "settings.scrub_kl_weight": 0.1, "settings.scrub_ce_weight": 0.9,
      "settings.scrub_max_epochs": 1, "settings.scrub_forget_batch_size": 64,
      "settings.l1_gamma": 0.001, "settings.neggrad_beta": 0.9,
      "settings.neggrad_forget_batch_size": 32}),
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


def test_every_option_has_a_case():
  covered = {a for _, argv, _ in CASES for a in argv if a.startswith("--")}
  covered |= {"--help", "--print-config", "--checkpoint", "--workdir", "--dataset", "--model",
              "--allow-partial",   # not a config field: tests/test_errors.py runs it
              "--devices"}   # not a config field: test_sharding.py runs it on 2 devices
  sub = next(a for a in cli.parser()._actions if a.dest == "command")
  for command in ("train", "unlearn"):
    options = {o for action in sub.choices[command]._actions for o in action.option_strings
               if o.startswith("--")}
    assert options - covered == set(), f"{command} options without a test case"


def test_every_settings_field_is_an_option():
  """A new field of the settings dataclasses appears in the CLI by itself."""
  from fmjax.methods import MethodSettings
  from fmjax.unlearning import UnlearnConfig
  sub = next(a for a in cli.parser()._actions if a.dest == "command")

  def dests(command):
    return {a.dest for a in sub.choices[command]._actions}
  assert {f.name for f in dataclasses.fields(MethodSettings)} <= dests("unlearn")
  assert {f.name for f in dataclasses.fields(UnlearnConfig)} - {
      "checkpoint", "method", "forget_classes", "settings"} <= dests("unlearn")
  assert {f.name for f in dataclasses.fields(training.TrainConfig)} <= dests("train")


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "two"], "argument --epochs: expected int or none, got 'two'"),
    (["--weighting", "median"], "expected one of ['sum', 'mean'], got 'median'"),
    (["--lr", "fast"], "argument --lr: expected 'compressed' or float, got 'fast'"),
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
