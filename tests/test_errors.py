"""Bad input gets one clear line (exit 2) naming the value and the fix, and loses
nothing: a rejected command leaves no file that would block the corrected one."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import pytest

import fmjax
from experiments import report as report_cli
from experiments import run as run_cli
from fmjax import __main__ as cli
from fmjax import checkpoints, training, unlearning


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
  """One epoch suffices here (conftest's `trained` has three); `digits` is conftest's."""
  workdir = tmp_path_factory.mktemp("errors") / "train"
  training.train(training.default_config("digits", "small_cnn", epochs=1), workdir,
                 dataset=digits, progress=False)
  return workdir


def fails(capsys, argv, *needles, main=cli.main):
  """Runs a CLI; asserts exit 2, one 'error:' line holding every needle, no traceback."""
  try:
    code = main([str(a) for a in argv])
  except SystemExit as e:   # argparse's own refusals
    code = e.code
  err = capsys.readouterr().err
  assert code == 2, err
  assert "Traceback" not in err
  for needle in needles:
    assert needle in err, (needle, err)
  return err


UNLEARN = ["unlearn", "--method", "fisher_mask", "--epochs", "0", "--relearn-epochs", "0",
           "--no-mia", "--quiet"]


def test_workdir_that_is_a_file(tmp_path, trained, capsys):
  (tmp_path / "file").write_text("x")
  fails(capsys, UNLEARN + ["--checkpoint", trained, "--workdir", tmp_path / "file"],
        "is a file, not a directory")
  fails(capsys, ["train", "--dataset", "digits", "--model", "small_cnn", "--workdir",
                 tmp_path / "file"], "is a file, not a directory")


def test_checkpoint_that_is_not_a_training_run(tmp_path, trained, capsys):
  unlearned = tmp_path / "unlearned"
  assert cli.main([str(a) for a in UNLEARN + ["--checkpoint", trained, "--workdir",
                                               unlearned]]) == 0
  capsys.readouterr()
  fails(capsys, UNLEARN + ["--checkpoint", unlearned, "--workdir", tmp_path / "u2"],
        "is not a training run's work directory", "unlearning run's directory",
        f"its training run is {str(trained)!r}")
  fails(capsys, UNLEARN + ["--checkpoint", tmp_path / "nothing", "--workdir", tmp_path / "u3"],
        "holds no training run", "python -m fmjax train")
  assert not (tmp_path / "u2").exists() and not (tmp_path / "u3").exists()


def test_trailing_slash_is_the_same_run(trained):
  a = unlearning.make_config(str(trained), "fisher_mask")
  b = unlearning.make_config(str(trained) + "/", "fisher_mask")
  assert a.to_json() == b.to_json()


def test_workdir_equal_to_the_training_directory(trained, capsys):
  err = fails(capsys, UNLEARN + ["--checkpoint", trained, "--workdir", trained],
              "is the training run's own directory", "a directory of its own")
  assert "delete" not in err
  assert training.read_config(str(trained)).epochs == 1   # untouched


@pytest.mark.parametrize("option, value, needle", [
    ("--batch-size", "0", "batch_size (--batch-size) must be an integer >= 1, got 0"),
    ("--eval-limit", "0", "eval_limit (--eval-limit) must be an integer >= 1, got 0"),
    ("--ratio", "1.5", "ratio (--ratio) must be in (0, 1], got 1.5"),
    ("--lr", "-1", "fisher_mask: lr (--lr) must be > 0, got -1.0"),
    ("--ig-steps", "0", "grad_mask: ig_steps (--ig-steps) must be an integer >= 1"),
    ("--weight-decay", "-1", "weight_decay (--weight-decay) must be >= 0, got -1.0"),
])
def test_bad_unlearn_values_are_refused_before_writing(tmp_path, trained, capsys, option,
                                                       value, needle):
  method = ["--method", "grad_mask"] if option == "--ig-steps" else []   # its own setting
  fails(capsys, UNLEARN + method + ["--checkpoint", trained, "--workdir", tmp_path / "u",
                                    option, value], needle)
  assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("args, needle", [
    (["--train-limit", "-5"], "train_limit (--train-limit) must be an integer >= 1, got -5"),
    (["--train-limit", "0"], "train_limit (--train-limit) must be an integer >= 1, got 0"),
    (["--decay-epochs", "a,b"], "argument --decay-epochs: expected float, got 'a'"),
    (["--noise-fraction", "1.2"], "noise_fraction (--noise-fraction) must be in (0, 1)"),
    (["--epochs", "0"], "epochs (--epochs) must be an integer >= 1"),
])
def test_bad_train_values_are_refused_before_writing(tmp_path, capsys, args, needle):
  fails(capsys, ["train", "--dataset", "digits", "--model", "small_cnn", "--workdir",
                 tmp_path / "t", *args], needle)
  assert not (tmp_path / "t").exists()


def test_a_diverging_training_stops_and_names_the_epoch(tmp_path, capsys):
  fails(capsys, ["train", "--dataset", "digits", "--model", "small_cnn", "--workdir",
                 tmp_path / "t", "--epochs", "3", "--lr", "1e6", "--quiet"],
        "training diverged in epoch 1", "smaller --lr")


def test_partial_training_is_refused_unless_allowed(tmp_path, digits, capsys):
  config = training.default_config("digits", "small_cnn", epochs=2)
  training.train(config, tmp_path / "t", dataset=digits, progress=False, stop_after_epoch=1)
  args = UNLEARN + ["--checkpoint", tmp_path / "t", "--workdir", tmp_path / "u"]
  fails(capsys, args, "stopped after epoch 1 of 2", "--allow-partial",
        "unlearn the epoch-1 model")
  assert cli.main([str(a) for a in args + ["--allow-partial"]]) == 0


def test_experiment_errors(tmp_path, capsys):
  fails(capsys, ["class_removal", "--small", "--seeds", "a", "--workdir", tmp_path / "e"],
        "--set seeds=a: expected int, got 'a'", main=run_cli.main)
  assert not (tmp_path / "e").exists()
  (tmp_path / "train").mkdir()
  (tmp_path / "train" / "config.json").write_text(json.dumps(dataclasses.asdict(
      training.default_config("digits", "small_cnn"))))
  fails(capsys, [tmp_path / "train"], "is not an experiment's config",
        main=report_cli.main)
  fails(capsys, [tmp_path / "nothing"], "holds no experiment", main=report_cli.main)


@pytest.fixture(scope="module")
def setup():
  model = fmjax.models.get_model("small_cnn", 10)
  v = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  return fmjax.make_fisher_diag(model, {"batch_stats": v["batch_stats"]}), v["params"]


class TestApi:

  @pytest.mark.parametrize("image, label, needle", [
      (jnp.zeros((0, 28, 28, 1)), jnp.zeros((0,), int), "the batch is empty"),
      (jnp.zeros((4, 28, 28)), jnp.zeros((4,), int), "cannot take images of shape (28, 28)"),
      (jnp.zeros((4, 32, 32, 3)), jnp.zeros((4,), int),
       "cannot take images of shape (32, 32, 3)"),
      (jnp.zeros((4, 28, 28, 1), jnp.uint8), jnp.zeros((4,), int),
       "Normalise uint8 images first"),
  ])
  def test_bad_batches(self, setup, image, label, needle):
    fisher_diag, params = setup
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
      fisher_diag(params, {"image": image, "label": label})

  def test_fisher_mask_wants_estimates(self, setup):
    fisher_diag, params = setup
    est = fisher_diag.sum(params, {"image": jnp.zeros((2, 28, 28, 1)),
                                   "label": jnp.zeros((2,), int)})
    with pytest.raises(ValueError, match="fisher_forget must be a FisherEstimate .total, count., "
                                         "got dict"):
      fmjax.fisher_mask(est.total, est, ratio=0.1)
    wrapped = fmjax.FisherEstimate(total=est.total, count=2)
    assert jax.tree.leaves(fmjax.fisher_mask(wrapped, est, ratio=0.1))


def test_unreadable_checkpoint_json_names_the_file(tmp_path):
  (tmp_path / "config.json").write_text("{")
  with pytest.raises(ValueError, match=r"config.json \(this run's config\) cannot be read"):
    checkpoints.claim_workdir(tmp_path, {"a": 1})


def test_a_different_config_is_refused_naming_each_changed_setting(tmp_path):
  """Nested blocks are walked to the settings that differ; the same change across a list's
  entries is one item; a key one side lacks is '(absent)'; past 4 items the rest are
  counted; the directory is left as it was."""
  old = {"epochs": 3, "method": {"name": "fisher_mask", "ratio": 0.04, "lr": "compressed"},
         "units": [{"seed": s, "unlearn": {"ratio": 0.08}} for s in range(6)]}
  checkpoints.claim_workdir(tmp_path, old)
  checkpoints.release_workdir(tmp_path)
  before = (tmp_path / "config.json").read_text()
  units = [{"seed": s, "unlearn": {"ratio": 0.1 if s != 3 else 0.08}} for s in range(6)]
  new = {**old, "method": {**old["method"], "ratio": 0.1}, "units": units, "limit": 5}
  with pytest.raises(ValueError) as e:
    checkpoints.claim_workdir(tmp_path, new)
  assert str(e.value) == (f"{tmp_path} holds a run with a different config (limit: (absent) -> "
                          "5, method.ratio: 0.04 -> 0.1, units[0-2,4-5].unlearn.ratio: 0.08 -> "
                          "0.1). Use another --workdir for this one.")
  many = {"epochs": 4, "method": {"name": "ssd", "alpha": 10}, "units": units[:2], "a": 1}
  with pytest.raises(ValueError, match=r"different config \(a: \(absent\) -> 1, epochs: 3 -> "
                                       r"4, method\.alpha: \(absent\) -> 10, method\.lr: "
                                       r"'compressed' -> \(absent\), and 3 more\)\. Use"):
    checkpoints.claim_workdir(tmp_path, many)
  assert (tmp_path / "config.json").read_text() == before
  # A run setting added since, at None, reads as the run it was (None is its old behaviour).
  checkpoints.claim_workdir(tmp_path, {**old, "added_since": None})
  checkpoints.release_workdir(tmp_path)


def test_a_settings_error_carries_only_its_own_hint():
  from fmjax import training
  with pytest.raises(ValueError) as e:
    training.default_config("digits", "small_cnn", lr=-1.0)
  assert "lr (--lr) must be > 0" in str(e.value) and "train_limit" not in str(e.value)
  with pytest.raises(ValueError, match=r"train_limit \(--train-limit\) must be an integer >= 1, "
                                       r"got 0\. train_limit None uses every example\."):
    training.default_config("digits", "small_cnn", train_limit=0)
