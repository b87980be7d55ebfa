"""Whole unlearning runs of the successors on real digits: forgetting, random subsets,
resume, the CLI, and the paper's methods unchanged bit for bit."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest

from fmjax import __main__ as cli
from fmjax import data, training, unlearning
from fmjax.methods import defaults

GOLDEN = pathlib.Path(__file__).parent / "golden" / "paper_methods_digits.json"


# `digits` and `trained` (the small CNN, 3 epochs on digits) come from conftest.py.


def _run(trained, digits, workdir, method, **kw):
  kw = {"relearn_epochs": 0, "mia": False, **kw}
  config = unlearning.make_config(trained, method, **kw)
  return unlearning.unlearn(config, workdir, dataset=digits, progress=False)


# Per method, the settings of the digits check and why. The original model (3 epochs at
# lr 0.01) is far weaker than a CIFAR ResNet-18, so published rates made for models trained
# at 0.1 are too large here: SalUn and random labels at lr 0.1 fall to ~71% remain accuracy,
# so they run at 0.03 (what `make successors` also sweeps); SCRUB's published 5e-4 leaves
# the class at 91% in 3 epochs and runs at 5e-3; l1-sparse's default gamma 5e-4 is a
# regulariser too weak to forget a class in 10 epochs here (forget 27% at 5e-3), gamma 0.02
# does; SSD with the code's batch importance selects no parameter at alpha 10 on this
# model (tested separately below), so the exact-Fisher variant carries the check.
DIGITS = {"ssd": {"importance": "fisher"}, "salun": {"lr": 0.03},
          "random_label": {"lr": 0.03}, "scrub": {"lr": 5e-3},
          "l1_sparse": {"gamma": 0.02}, "neggrad_plus": {}}


@pytest.mark.parametrize("method", sorted(DIGITS))
def test_each_successor_forgets_the_class_and_keeps_the_rest(tmp_path, trained, digits,
                                                            method):
  s = _run(trained, digits, tmp_path, method, **DIGITS[method]).summary
  orig, final = s["original"], s["final"]
  assert orig["forget_test_accuracy"] > 0.9
  # Forgotten: class-0 test accuracy at most 5% (measured 0% for every method), from >90%.
  assert final["forget_test_accuracy"] <= 0.05
  # Kept: the other classes within 3 points of the original (measured +0..+5 points: the
  # 3-epoch original is still improving, so training methods gain a little; SSD -0.1).
  assert final["remain_test_accuracy"] >= orig["remain_test_accuracy"] - 0.03
  assert s["protocol"]["UA"] >= 0.95


def test_ssd_batch_importance_is_the_papers_rule_and_may_select_nothing(tmp_path, trained,
                                                                        digits):
  """On a model that fits D_f perfectly, SSD's batch importance at alpha = 10 selects no
  parameter (the edit is the identity); a lower alpha selects some and forgets."""
  at10 = _run(trained, digits, tmp_path / "a10", "ssd")
  assert at10.records[1]["info"]["selected_fraction"] == 0.0
  for key in ("test_accuracy", "forget_test_accuracy", "forget_train_loss"):
    assert at10.summary["mask_only"][key] == at10.summary["original"][key]
  low = _run(trained, digits, tmp_path / "a1", "ssd", alpha=1.0)
  assert low.records[1]["info"]["selected_fraction"] > 0.0


def _close(got, want, where=""):
  """Equal records: floats to 1e-5 relative, everything else exactly."""
  if isinstance(want, dict):
    assert isinstance(got, dict) and got.keys() == want.keys(), where
    for k in want:
      _close(got[k], want[k], f"{where}.{k}")
  elif isinstance(want, list):
    assert isinstance(got, list) and len(got) == len(want), where
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
      _close(g, w, f"{where}[{i}]")
  elif isinstance(want, float):
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7), where
  else:
    assert got == want, where


def test_paper_methods_are_bit_identical_to_before_the_interface_changed(tmp_path, digits):
  """The nine paper methods through the generalised interface give the readouts of commit
  7624b8a (tests/golden). Bit for bit, weights included, on the CPU they were recorded on;
  another CPU's XLA code rounds differently (the original's loss moves by 3e-7 relative),
  so what is asserted is every record, floats to 1e-5 relative: a wiring change moves them
  by far more."""
  golden = json.loads(GOLDEN.read_text())["methods"]
  training.train(training.default_config("digits", "small_cnn", epochs=2), tmp_path / "t",
                 dataset=digits, progress=False)
  for method, want in golden.items():
    kw = {"epochs": 2 if defaults(method).trains else 0, "relearn_epochs": 1,
          "eval_limit": 300, **unlearning.for_method(method, {
              "score_limit": 300, "ig_steps": 2, "cg_iters": 2, "hessian_examples": 64,
              "fisher_chunk": 32})}
    r = unlearning.unlearn(unlearning.make_config(str(tmp_path / "t"), method, **kw),
                           tmp_path / method, dataset=digits, progress=False)
    got = [{k: v for k, v in rec.items() if k not in ("seconds", "mia_efficacy")}
           for rec in r.records]
    _close(json.loads(json.dumps(got)), want["records"], method)


def test_random_subset_forgetting(tmp_path, trained, digits):
  r = _run(trained, digits, tmp_path / "ft", "finetune", forget_random=0.1, epochs=1)
  n = len(digits.train_labels)
  assert r.summary["protocol"]["TA"] == r.summary["final"]["test_accuracy"]
  assert "forget_test_accuracy" not in r.summary["final"]
  split = data.random_split(n, 0.1, 0)
  assert len(split.forget) == round(0.1 * n) and len(np.unique(digits.train_labels[
      split.forget])) == 10   # across classes
  np.testing.assert_array_equal(split.forget, data.random_split(n, 0.1, 0).forget)
  assert not np.array_equal(split.forget, data.random_split(n, 0.1, 1).forget)
  with pytest.raises(ValueError, match="tfidf removes whole classes only.*random subset"):
    _run(trained, digits, tmp_path / "tf", "tfidf", forget_random=0.1)
  with pytest.raises(ValueError, match="both name a forget set"):
    unlearning.UnlearnConfig(trained, "finetune", forget_classes=(0,), forget_random=0.1)
  with pytest.raises(ValueError, match=r"forget_random \(--forget-random\) must be a fraction"):
    unlearning.make_config(trained, "finetune", forget_random=1.5)


def test_a_random_forget_task_splits_the_training_set_into_disjoint_parts(digits):
  """The task a random-forgetting run builds (``build_task``, as ``unlearn`` does): D_f of
  round(0.1 N) examples, D_r every other example, none in both; a K-example remain set is
  drawn from D_r only (planted: D_r = every index; K drawn from the whole set)."""
  from fmjax.run import build
  cfg = training.default_config("digits", "small_cnn", epochs=1)
  n = len(digits.train_labels)
  for remain_limit in (None, 200):
    config = unlearning.UnlearnConfig("unused", "finetune", forget_classes=None,
                                      forget_random=0.1, seed=4, remain_limit=remain_limit)
    task, remain_all = build.build_task(config, cfg, digits, progress=False)
    assert len(task.forget) == round(0.1 * n) and len(remain_all) == n - len(task.forget)
    assert not np.intersect1d(task.forget, remain_all).size
    np.testing.assert_array_equal(np.union1d(task.forget, remain_all), np.arange(n))
    assert len(task.remain) == (remain_limit or len(remain_all))
    assert np.isin(task.remain, remain_all).all()
    np.testing.assert_array_equal(task.forget, data.random_split(n, 0.1, config.draw_seed).forget)


@pytest.mark.parametrize("method, kw", [("salun", {"lr": 0.03}), ("scrub", {"lr": 5e-3})])
def test_a_procedure_run_resumes_to_the_same_weights(tmp_path, trained, digits, method, kw):
  kw = {"epochs": 3, "relearn_epochs": 0, "mia": False, **kw}
  config = unlearning.make_config(trained, method, **kw)
  whole = unlearning.unlearn(config, tmp_path / "whole", dataset=digits, progress=False)
  part = unlearning.unlearn(config, tmp_path / "part", dataset=digits, progress=False,
                            stop_after_epoch=1)
  assert [r["phase"] for r in part.records] == ["original", "edit", "finetune"]
  resumed = unlearning.unlearn(config, tmp_path / "part", dataset=digits, progress=False)
  for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state), strict=True):
    np.testing.assert_array_equal(a, b)
  assert _no_seconds(resumed.records) == _no_seconds(whole.records)


def _no_seconds(records):
  return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_cli_forget_random_and_method_settings(tmp_path, trained, capsys):
  code = cli.main(["unlearn", "--checkpoint", trained, "--method", "ssd", "--workdir",
                   str(tmp_path / "u"), "--forget-random", "0.1", "--importance", "fisher",
                   "--alpha", "5", "--print-config"])
  assert code == 0
  config = json.loads(capsys.readouterr().out)
  assert config["forget_random"] == 0.1 and config["forget_classes"] is None
  assert config["method"]["importance"] == "fisher" and config["method"]["alpha"] == 5
  code = cli.main(["unlearn", "--checkpoint", trained, "--method", "ssd", "--workdir",
                   str(tmp_path / "v"), "--forget-random", "0.1", "--forget-class", "1"])
  assert code == 2 and "--forget-random names the forget set" in capsys.readouterr().err
  assert not (tmp_path / "v").exists()
