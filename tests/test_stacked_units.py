"""K fine-tuning units as one program (parameters stacked, vmap): equal to K separate runs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from experiments import _runner, run
from experiments._spec import Experiment, Original, Unit
from fmjax import checkpoints, finetuning, unlearning
from fmjax import runner as runner_lib

# Mask methods and seeds share the update rule and stack; SCRUB (its own procedure) and
# influence (no fine-tuning) run alone inside the same call.
UNITS = [("fisher_mask", 0), ("random_mask", 0), ("finetune", 1), ("fisher_mask", 1),
         ("scrub", 0), ("influence", 0)]


def _configs(checkpoint, **over):
  return [unlearning.make_config(checkpoint, m, seed=s, epochs=None if m == "influence" else 2,
                                 relearn_epochs=1, eval_limit=300, **unlearning.for_method(
                                     m, {"hessian_examples": 64, "cg_iters": 3}), **over)
          for m, s in UNITS]


def _comparable(records):
  """Records without wall times and the stacking note."""
  return checkpoints.untimed(records)


def _assert_same_records(got, want):
  assert len(got) == len(want)
  for g, w in zip(_comparable(got), _comparable(want), strict=True):
    assert g.keys() == w.keys()
    for k, v in w.items():
      if isinstance(v, float):
        assert g[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
      else:
        assert g[k] == v, k


@pytest.fixture(scope="module")
def separate(trained, digits, tmp_path_factory):
  root = tmp_path_factory.mktemp("separate")
  return [unlearning.unlearn(c, root / f"u{i}", dataset=digits, progress=False)
          for i, c in enumerate(_configs(trained))]


@pytest.mark.scale   # make test-scale (CI)
def test_stacked_units_equal_separate_runs(trained, digits, separate, tmp_path):
  many = unlearning.unlearn_many(_configs(trained), [tmp_path / f"u{i}" for i in
                                                     range(len(UNITS))],
                                 dataset=digits, progress=False)
  for (method, _), got, want in zip(UNITS, many, separate, strict=True):
    _assert_same_records(got.records, want.records)
    assert got.summary["final"] == pytest.approx(want.summary["final"], rel=1e-6)
    np.testing.assert_allclose(jax.tree.leaves(got.state.params)[0],
                               jax.tree.leaves(want.state.params)[0], rtol=1e-6, atol=1e-7)
    stacked = {r.get("stacked_units") for r in got.records if r["phase"] == "finetune"}
    # The four mask-method units shared one program; SCRUB and influence ran alone.
    assert stacked == ({4} if method not in ("scrub", "influence") else {None} if method ==
                       "scrub" else set())
    on_disk = json.loads((tmp_path / f"u{UNITS.index((method, _))}" /
                          "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(got.summary))


@pytest.mark.scale   # make test-scale (CI)
def test_a_stopped_group_resumes_like_an_uninterrupted_one(trained, digits, separate, tmp_path):
  dirs = [tmp_path / f"u{i}" for i in range(len(UNITS))]
  first = unlearning.unlearn_many(_configs(trained), dirs, dataset=digits, progress=False,
                                  stop_after_epoch=1)
  assert first[0].summary == {} and [r["epoch"] for r in first[0].records] == [None, 0, 1]
  # One unit runs on alone for its last epoch: the group's units now start from
  # different epochs and are grouped apart, still each exactly as alone.
  unlearning.unlearn(_configs(trained)[1], dirs[1], dataset=digits, progress=False)
  again = unlearning.unlearn_many(_configs(trained), dirs, dataset=digits, progress=False)
  for got, want in zip(again, separate, strict=True):
    _assert_same_records(got.records, want.records)
    assert got.summary["final"] == pytest.approx(want.summary["final"], rel=1e-6)


# Retrain and every procedure, two seeds each; SalUn also at a second rate (a per-unit
# input, so the three SalUn units share one program).
PROCEDURES = [(m, s, {}) for m in ("retrain", "salun", "scrub", "l1_sparse", "neggrad_plus",
                                   "random_label") for s in (0, 1)] + [("salun", 2, {"lr": 0.05})]


@pytest.mark.scale   # make test-scale (CI)
def test_retrain_and_every_procedure_stack_and_equal_separate_runs(trained, digits, tmp_path):
  def configs():
    return [unlearning.make_config(trained, m, seed=s, epochs=2, relearn_epochs=1,
                                   eval_limit=300, mia=False, **kw) for m, s, kw in PROCEDURES]
  alone = [unlearning.unlearn(c, tmp_path / f"a{i}", dataset=digits, progress=False)
           for i, c in enumerate(configs())]
  many = unlearning.unlearn_many(configs(), [tmp_path / f"m{i}" for i in range(len(alone))],
                                 dataset=digits, progress=False)
  for (method, _, _), got, want in zip(PROCEDURES, many, alone, strict=True):
    _assert_same_records(got.records, want.records)
    assert got.summary["final"] == pytest.approx(want.summary["final"], rel=1e-6)
    for a, b in zip(jax.tree.leaves(got.state), jax.tree.leaves(want.state), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    stacked = {r.get("stacked_units") for r in got.records if r["phase"] == "finetune"}
    assert stacked == {3 if method == "salun" else 2}, method


def test_mismatched_units_are_refused_with_the_reason(trained, digits, tmp_path):
  from fmjax import training
  _, model, _, ds = training.load_trained(trained, dataset=digits)
  images, labels = jax.numpy.asarray(ds.train_images), jax.numpy.asarray(ds.train_labels)

  def runner(batch_size):
    proc = finetuning.finetune_procedure(0.01, batch_size=batch_size, momentum=0.9,
                                         weight_decay=1e-4)
    return runner_lib.Runner(model, proc, images, labels, {"remain": np.arange(100)},
                             mean=ds.mean, std=ds.std, seed=0)

  with pytest.raises(ValueError, match="cannot share one program.*stack_key"):
    runner_lib.stack([runner(32), runner(16)])
  with pytest.raises(ValueError, match="one work directory per config"):
    unlearning.unlearn_many(_configs(trained)[:2], [tmp_path / "x"], dataset=digits)
  with pytest.raises(ValueError, match="same work directory twice"):
    unlearning.unlearn_many(_configs(trained)[:2], [tmp_path / "x", tmp_path / "x"],
                            dataset=digits)


@pytest.mark.scale   # make test-scale (CI)
def test_the_runner_stacks_units_when_asked(tmp_path):
  exp = Experiment(name="t", title="tiny", originals={"main": Original(
      "digits", "small_cnn", {"epochs": 2})}, units=tuple(
          Unit("digits", m, m, "main", {"epochs": 1, "relearn_epochs": 0, "mia": False})
          for m in ("finetune", "fisher_mask", "random_mask")), seeds=(0, 1))
  one = _runner.run(exp, tmp_path / "k1", progress=False)
  three = _runner.run(exp, tmp_path / "k3", progress=False, units_per_program=3)
  assert sorted(one["ran"]) == sorted(three["ran"]) and len(three["ran"]) == 6
  for seed in (0, 1):
    for line in ("finetune", "fisher_mask", "random_mask"):
      a, b = (json.loads((_runner.unit_dir(tmp_path / k, "digits", line, seed) /
                          "summary.json").read_text()) for k in ("k1", "k3"))
      assert b["final"] == pytest.approx(a["final"], rel=1e-6)
      assert b["mask_only"] == pytest.approx(a["mask_only"], rel=1e-6)
  with pytest.raises(ValueError, match="units_per_program"):
    _runner.run(exp, tmp_path / "k0", progress=False, units_per_program=0)
  assert run.main(["mask_only", "--small", "--units-per-program", "0", "--workdir",
                   str(tmp_path / "bad"), "--quiet"]) == 2


@pytest.mark.scale   # make test-scale (CI)
def test_a_tiny_privacy_ensemble_runs_its_seeds_as_one_program_end_to_end(tmp_path):
  """`python -m experiments.run privacy --small --units-per-program 4`: 4 seeds of every
  line (and 4 more of Retrain as the reference) on digits, each line's seeds ONE program;
  every model leaves its records and confidences but no checkpoint, and the report scores
  every line against the reference ensemble."""
  from experiments import privacy
  assert run.main(["privacy", "--small", "--units-per-program", "4", "--quiet",
                   "--workdir", str(tmp_path)]) == 0
  exp = privacy.get_config(small=True)
  units = list(tmp_path.glob("units/*/*/seed*"))
  assert len(units) == len(exp.units) * 4 == 44
  stacked = set()
  for d in units:
    assert (d / "confidences.npz").is_file() and (d / "summary.json").is_file()
    assert not (d / "checkpoints").exists(), d   # an ensemble member keeps no checkpoint
    config = json.loads((d / "config.json").read_text())
    records = checkpoints.read_metrics(d)
    if any(r.get("stacked_units") == 4 for r in records):
      stacked.add(config["method"]["name"])
  assert {"retrain", "finetune", "fisher_mask", "salun", "scrub", "l1_sparse", "neggrad_plus",
          "random_label"} <= stacked   # SSD does not train
  report = (tmp_path / "report.md").read_text()
  for line in ("retrain", "finetune", "fisher_mask", "ssd", "ssd (fisher)", "salun", "scrub",
               "l1_sparse", "neggrad_plus", "random_label"):
    assert f"| random 10% | {line} | 4 vs 4 |" in report, line
  assert "| random 10% | retrain (reference) | 4 vs 4 |" not in report   # the reference
  assert "| random 10% | U-LiRA AUC | 9 |" in report   # the rank-agreement table


@pytest.mark.scale   # make test-scale (CI)
def test_the_successors_smoke_form_stacks_retrain_and_the_procedures(tmp_path):
  """`python -m experiments.run successors --small --units-per-program 4`: the runs of one
  line (settings and seeds) go to one program, Retrain's and the procedures' too, and the
  summaries equal one run after the other."""
  common = ["--small", "--seeds", "0,1", "--quiet"]
  assert run.main(["successors", *common, "--workdir", str(tmp_path / "k1")]) == 0
  assert run.main(["successors", *common, "--units-per-program", "4", "--workdir",
                   str(tmp_path / "k4")]) == 0
  stacked_lines = set()
  for path in sorted((tmp_path / "k4").glob("units/**/summary.json")):
    twin = tmp_path / "k1" / path.relative_to(tmp_path / "k4")
    a, b = json.loads(twin.read_text()), json.loads(path.read_text())
    assert b["final"] == pytest.approx(a["final"], rel=1e-5, abs=1e-7), path
    records = [json.loads(x) for x in (path.parent / "metrics.jsonl").read_text().splitlines()]
    if any(r.get("stacked_units", 1) > 1 for r in records):
      stacked_lines.add(b["method"])
  assert {"retrain", "salun", "scrub", "l1_sparse", "neggrad_plus", "random_label",
          "fisher_mask"} <= stacked_lines
