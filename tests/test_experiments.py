"""Every experiment config in its small form, end to end on digits; report and compare."""

from __future__ import annotations

import dataclasses
import importlib
import json

import numpy as np
import pytest

from experiments import EXPERIMENTS, _runner, compare, report, run
from experiments._spec import Experiment, Original, Unit
from fmjax import checkpoints, methods


# salun_recipe's small form is successors' units on digits with SalUn's split (make
# test-slow; `make test-prepare` runs its smoke form on CIFAR archives); privacy's runs
# 44 units (4 seeds of 11 lines, about a minute): make test-slow.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("salun_recipe", "privacy", "privacy_cifar10")
                                  else n
                                  for n in EXPERIMENTS])
def test_every_experiment_runs_small_and_resumes_without_recomputing(tmp_path, name, capsys):
  module = importlib.import_module(f"experiments.{name}")
  full = module.get_config()
  assert full.units and full.originals and "Run" in module.__doc__
  exp = module.get_config(small=True)
  assert {o.dataset for o in exp.originals.values()} == {"digits"}
  assert {u.method for u in exp.units} <= {u.method for u in full.units}
  code = run.main([name, "--small", "--workdir", str(tmp_path), "--quiet"])
  assert code == 0
  text = (tmp_path / "report.md").read_text()
  assert text.startswith(f"# {exp.title}") and "units finished" in text
  for table in exp.tables:
    assert f"## {report.ALL_TABLES[table][0]}" in text
  assert "Not finished" not in text
  if exp.figure:
    assert (tmp_path / "figure.png").stat().st_size > 5_000
  rows = (tmp_path / "results.csv").read_text().splitlines()
  assert len(rows) > len(exp.units) and rows[0].startswith("setting,line,method,seed")
  # A rerun recomputes nothing: every unit is skipped.
  outcome = _runner.run(exp, tmp_path, progress=False)
  assert outcome["ran"] == [] and len(outcome["skipped"]) == len(exp.units) * len(exp.seeds)
  # The report rebuilds from the files alone.
  (tmp_path / "report.md").unlink()
  assert report.main([str(tmp_path)]) == 0
  assert capsys.readouterr().out.startswith(f"# {exp.title}")


def test_class_removal_keeps_fisher_noise_and_influence_without_fine_tuning():
  from experiments import class_removal, fashion_offline
  for exp in (class_removal.get_config(unlearn={"epochs": 7}), fashion_offline.get_config()):
    epochs = {u.method: u.unlearn.get("epochs") for u in exp.units}
    assert epochs["fisher_noise"] is None and epochs["influence"] is None
    assert epochs["fisher_mask"] == (7 if exp.name == "class_removal" else 5)


def _tiny(name="t", methods=("finetune", "fisher_mask")):
  return Experiment(name=name, title="tiny", originals={"main": Original(
      "digits", "small_cnn", {"epochs": 2})}, units=tuple(
          Unit("digits", m, m, "main", {"epochs": 1, "relearn_epochs": 0, "mia": False})
          for m in methods), seeds=(0,))


def test_an_interrupted_experiment_keeps_finished_units(tmp_path):
  exp = _tiny()
  _runner.run(exp, tmp_path, progress=False)
  # Simulate an interruption inside the second unit: its summary is missing.
  unit = _runner.unit_dir(tmp_path, "digits", "fisher_mask", 0)
  (unit / "summary.json").unlink()
  before = (_runner.unit_dir(tmp_path, "digits", "finetune", 0) / "metrics.jsonl").read_text()
  outcome = _runner.run(exp, tmp_path, progress=False)
  assert outcome["ran"] == ["digits / fisher_mask / seed 0"]
  assert outcome["skipped"] == ["digits / finetune / seed 0"]
  after = (_runner.unit_dir(tmp_path, "digits", "finetune", 0) / "metrics.jsonl").read_text()
  assert before == after
  # A different experiment in the same directory is refused.
  with pytest.raises(ValueError, match="different config"):
    _runner.run(_tiny(methods=("finetune",)), tmp_path, progress=False)


def test_report_marks_pending_units_and_compare_sets_runs_side_by_side(tmp_path, capsys):
  exp = _tiny()
  _runner.run(exp, tmp_path / "a", progress=False)
  (_runner.unit_dir(tmp_path / "a", "digits", "finetune", 0) / "summary.json").unlink()
  paths = report.build(tmp_path / "a")
  assert paths["pending"] == ["digits / finetune / seed 0"]
  assert "## Not finished" in paths["report"].read_text()
  _runner.run(exp, tmp_path / "b", progress=False)
  table = compare.compare(str(tmp_path / "a"), str(tmp_path / "b"))
  assert "| digits | fisher_mask |" in table and "finetune" not in table.split("\n", 3)[-1]
  assert compare.main([str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
  assert "no experiment" in capsys.readouterr().err


def test_a_moved_experiment_resumes_and_a_damaged_unit_record_is_repaired(tmp_path):
  """Units record their original relative to themselves: a moved copy resumes (and an
  absolute record from before still reads); a finished unit whose metrics.jsonl is
  damaged reruns from its checkpoint and ends as it was."""
  import shutil
  exp = _tiny()
  _runner.run(exp, tmp_path / "a", progress=False)
  shutil.move(tmp_path / "a", tmp_path / "b")
  unit = _runner.unit_dir(tmp_path / "b", "digits", "fisher_mask", 0)
  good = (unit / "metrics.jsonl").read_text()
  (unit / "metrics.jsonl").write_text("{garb\n")
  (unit / "summary.json").unlink()   # a unit that must rerun in the moved copy
  other = _runner.unit_dir(tmp_path / "b", "digits", "finetune", 0)
  (other / "metrics.jsonl").write_text(good[:10])   # damaged, its summary kept
  outcome = _runner.run(exp, tmp_path / "b", progress=False)
  assert sorted(outcome["ran"]) == ["digits / finetune / seed 0", "digits / fisher_mask / seed 0"]
  assert checkpoints.untimed(checkpoints.read_metrics(unit)) == checkpoints.untimed(
      [json.loads(x) for x in good.splitlines()])
  config = json.loads((unit / "config.json").read_text())
  assert config["checkpoint"] == "../../../../originals/main"
  # A record from before paths were relative: the absolute path of the same original.
  config["checkpoint"] = str(tmp_path / "b" / "originals" / "main")
  del config["checkpoint_absolute"]
  (unit / "config.json").write_text(json.dumps(config))
  (unit / "summary.json").unlink()
  assert _runner.run(exp, tmp_path / "b", progress=False)["ran"] == [
      "digits / fisher_mask / seed 0"]


@pytest.mark.parametrize("args, message", [
    (["--set", "unlearn.ratio=2"], "ratio"),
    (["--devices", "9"], "device"),
    (["--set", "unlearn.forget_random=0.1", "--set", "unlearn.forget_classes=none"], None),
])
def test_a_bad_unit_setting_or_device_count_is_refused_before_anything_is_written(
    tmp_path, capsys, args, message):
  code = run.main(["mask_only", "--small", "--workdir", str(tmp_path / "run"), "--quiet",
                   *args])
  err = capsys.readouterr().err
  if message is None:   # tfidf (a mask_only line) cannot forget a random subset
    message = "tfidf removes whole classes only"
  assert code == 2 and message in err and "Traceback" not in err, err
  assert not (tmp_path / "run").exists()


def test_bad_experiment_definitions_and_options(tmp_path, capsys):
  with pytest.raises(ValueError, match="share a"):
    Experiment("x", "x", {"main": Original("digits", "small_cnn")},
               (Unit("s", "a", "finetune"), Unit("s", "a", "fisher_mask")))
  with pytest.raises(ValueError, match="unknown originals"):
    Experiment("x", "x", {}, (Unit("s", "a", "finetune"),))
  assert run.main(["mask_only", "--dataset", "mnist", "--workdir", str(tmp_path)]) == 2
  assert "does not take --dataset" in capsys.readouterr().err
  exp = _tiny()
  assert Experiment.from_json(json.loads(json.dumps(exp.to_json()))) == exp


MASKS = ("random_mask", "activation_mask", "grad_mask", "fisher_mask", "tfidf")


class TestOverrides:
  """`python -m experiments.run NAME --set KEY=VALUE`: the same experiment, changed by data."""

  def test_values_are_parsed_by_the_fields_type(self):
    from experiments import _overrides
    got = _overrides.parse(["seeds=0,2", "train.epochs=1", "train.decay_epochs=1,1.5",
                            "train.augment=true", "train.train_limit=none",
                            "unlearn.ratio=0.04", "unlearn.lr=compressed", "unlearn.lr=0.5",
                            "unlearn.mia=false", "unlearn.forget_classes=3,4"])
    assert got == {"seeds": (0, 2), "train.epochs": 1, "train.decay_epochs": (1.0, 1.5),
                   "train.augment": True, "train.train_limit": None, "unlearn.ratio": 0.04,
                   "unlearn.lr": 0.5, "unlearn.mia": False, "unlearn.forget_classes": (3, 4)}

  @pytest.mark.parametrize("item, match", [
      ("train.epochs=two", r"--set train.epochs=two: expected int, got 'two'"),
      ("unlearn.mia=maybe", r"expected true or false"),
      ("seeds=a", r"--set seeds=a: expected int"),
      ("seeds=", r"at least one seed"),
      ("train.epoch=1", r"--set train.epoch: unknown key; valid keys: .*train\.epochs"),
      ("ratio=0.1", r"unknown key; valid keys: .*unlearn\.ratio"),
      ("train.epochs", r"--set takes KEY=VALUE"),
  ])
  def test_bad_items_are_clear_errors(self, item, match):
    from experiments import _overrides
    with pytest.raises(ValueError, match=match):
      _overrides.parse([item])

  def test_applied_to_every_original_and_unit(self):
    from experiments import _overrides, class_removal
    exp = _overrides.apply(class_removal.get_config("cifar10", "resnet20"), _overrides.parse(
        ["train.epochs=1", "train.train_limit=300", "unlearn.epochs=1", "unlearn.ratio=0.04",
         "seeds=0"]))
    assert exp.originals["main"] == Original("cifar10", "resnet20",
                                             {"epochs": 1, "train_limit": 300})
    assert exp.seeds == (0,)
    for unit in exp.units:
      # A method's setting reaches the units whose method has it: the mask ratio the masks.
      assert unit.unlearn.get("ratio") == (0.04 if unit.method in MASKS else None)
      # FisherNoise and Influence stay without fine-tuning, as the paper draws them.
      assert unit.unlearn.get("epochs") == (None if unit.method in ("fisher_noise", "influence")
                                            else 1)

  def test_cli_records_overrides_and_rejects_bad_ones_before_writing(self, tmp_path, capsys):
    code = run.main(["class_removal", "--small", "--workdir", str(tmp_path / "bad"), "--quiet",
                     "--set", "unlearn.ratio=lots"])
    assert code == 2 and "--set unlearn.ratio=lots: expected float" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    code = run.main(["class_removal", "--small", "--dataset", "cifar10", "--workdir",
                     str(tmp_path / "bad")])
    assert code == 2 and "cannot be combined with --dataset" in capsys.readouterr().err
    code = run.main(["mask_only", "--small", "--workdir", str(tmp_path / "run"), "--quiet",
                     "--seeds", "1", "--set", "unlearn.ratio=0.08"])
    assert code == 0
    saved = Experiment.from_json(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert saved.seeds == (1,) and all(u.unlearn.get("ratio") == (
        0.08 if u.method in MASKS else None) for u in saved.units)
    # Another --set on the finished run is refused in one line naming what changed.
    code = run.main(["mask_only", "--small", "--workdir", str(tmp_path / "run"), "--quiet",
                     "--seeds", "1", "--set", "unlearn.ratio=0.1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.endswith("holds a run with a different config (units[1-5].unlearn."
                                      "ratio: 0.08 -> 0.1). Use another --workdir for this one.")
    # The report's presentation may change on a finished run (nothing recomputed); what its
    # units compute may not.
    import dataclasses
    outcome = _runner.run(dataclasses.replace(saved, title="renamed", tables=("final",)),
                          tmp_path / "run", progress=False)
    assert outcome["ran"] == [] and len(outcome["skipped"]) == len(saved.units)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["title"] == "renamed" and stored["tables"] == ["final"]
    with pytest.raises(ValueError, match="different config"):
      _runner.run(dataclasses.replace(saved, seeds=(2,)), tmp_path / "run", progress=False)
    code = run.main(["mask_only", "--small", "--workdir", str(tmp_path / "none"), "--quiet",
                     "--set", "unlearn.fraction=0.3"])
    assert code == 2 and ("--set unlearn.fraction: no unit of mask_only has that setting"
                          in capsys.readouterr().err)
    assert not (tmp_path / "none").exists()

  def test_the_smoke_form_is_the_cheap_settings_as_overrides(self):
    from experiments import _overrides, _spec, limited_remain
    exp = _overrides.apply(limited_remain.get_config(), _overrides.parse(_spec.SMOKE),
                           strict=False)   # no grad_mask here: ig_steps reaches no unit
    assert exp.originals["main"].train == {"epochs": 1, "train_limit": 320}
    assert exp.seeds == limited_remain.get_config().seeds   # run --smoke keeps the first
    for unit in exp.units:
      assert unit.unlearn["eval_limit"] == _spec.CHEAP_UNLEARN["eval_limit"]
      assert unit.unlearn["epochs"] == (0 if unit.setting == "forget only" else 1)
      assert "ig_steps" not in unit.unlearn
    with pytest.raises(ValueError, match="no unit of limited_remain has that setting"):
      _overrides.apply(limited_remain.get_config(), _overrides.parse(_spec.SMOKE))

  def test_fewer_epochs_keep_a_configs_decays_at_their_fractions(self):
    from experiments import _overrides, salun_recipe
    exp = _overrides.apply(salun_recipe.get_config(), _overrides.parse(["train.epochs=2"]))
    train = exp.originals["main"].train
    assert train["epochs"] == 2 and train["holdout_seed"] == 1
    np.testing.assert_allclose(train["decay_epochs"], (91 / 91, 136 / 91))
    exp = _overrides.apply(salun_recipe.get_config(), _overrides.parse(
        ["train.epochs=4", "train.decay_epochs=3"]))
    assert exp.originals["main"].train["decay_epochs"] == (3.0,)

  def test_a_method_scoped_override_reaches_that_method_only(self):
    from experiments import _overrides, successors
    exp = _overrides.apply(successors.get_config(small=True), _overrides.parse(
        ["unlearn.salun.batch_size=64", "unlearn.score_limit=50"]))
    for unit in exp.units:
      assert unit.unlearn.get("batch_size") == (64 if unit.method == "salun" else None)
      assert ("score_limit" in unit.unlearn) == ("score_limit" in methods.field_names(
          unit.method))


class TestLrGrid:
  """`--lr-grid METHOD=a,b`: one unit per rate, the protocol table picks the best by gap."""

  def test_grids_parse_and_expand_into_one_group_per_line(self):
    from experiments import _overrides
    from experiments._spec import sweep_lr
    grids = _overrides.parse_grids(["salun=0.1,0.03", "scrub=5e-4"])
    assert grids == {"salun": (0.1, 0.03), "scrub": (5e-4,)}
    exp = Experiment("x", "x", {"main": Original("digits", "small_cnn")},
                     (Unit("s", "retrain", "retrain"), Unit("s", "salun", "salun"),
                      Unit("s", "scrub", "scrub")))
    swept = sweep_lr(exp, grids, tune=False)
    assert [(u.line, u.group, u.unlearn.get("lr")) for u in swept.units] == [
        ("retrain", None, None), ("salun lr=0.1", "salun", 0.1), ("salun lr=0.03", "salun", 0.03),
        ("scrub lr=0.0005", "scrub", 5e-4)]
    assert Experiment.from_json(json.loads(json.dumps(swept.to_json()))) == swept
    assert "tuning" not in json.dumps(swept.to_json())   # older directories still match
    # By default every rate also runs on tuning seeds, against a tuning Retrain.
    tuned = sweep_lr(exp, grids)
    assert [(u.line, u.group, u.unlearn.get("lr"), u.tuning, u.seeds((0, 1)))
            for u in tuned.units[4:]] == [
        ("retrain (tuning)", None, None, True, (2000, 2001)),
        ("salun lr=0.1 (tuning)", "salun", 0.1, True, (2000, 2001)),
        ("salun lr=0.03 (tuning)", "salun", 0.03, True, (2000, 2001)),
        ("scrub lr=0.0005 (tuning)", "scrub", 5e-4, True, (2000, 2001))]
    assert tuned.units[:4] == swept.units
    assert Experiment.from_json(json.loads(json.dumps(tuned.to_json()))) == tuned
    no_retrain = dataclasses.replace(exp, units=exp.units[1:])
    with pytest.raises(ValueError, match="setting 's' of experiment x has no Retrain unit"):
      sweep_lr(no_retrain, grids)

  @pytest.mark.parametrize("items, match", [
      (["salun"], "METHOD=RATE"), (["nope=0.1"], "unknown method"),
      (["salun=0,0.1"], "rates > 0"), (["salun=fast"], "salun=fast")])
  def test_bad_grids_are_clear_errors(self, items, match):
    from experiments import _overrides
    with pytest.raises(ValueError, match=match):
      _overrides.parse_grids(items)

  def test_a_grid_for_a_method_the_experiment_lacks_is_refused(self, tmp_path, capsys):
    code = run.main(["ratio_sweep", "--small", "--workdir", str(tmp_path / "r"),
                     "--lr-grid", "salun=0.1"])
    assert code == 2 and "does not run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

  def test_protocol_table_gap_and_best_rate(self):
    units = (Unit("s", "retrain", "retrain"), Unit("s", "salun lr=0.1", "salun", group="salun"),
             Unit("s", "salun lr=0.03", "salun", group="salun"), Unit("s", "ssd", "ssd"))
    exp = Experiment("x", "x", {"main": Original("digits", "small_cnn")}, units, seeds=(0,))

    def result(unit, ua, ra, ta, mia):
      p = {"UA": ua, "RA": ra, "TA": ta, "MIA": mia}
      records = [{"phase": "original", "seconds": {"evaluate": 7.0}},
                 {"phase": "edit", "seconds": {"score": 0.5, "evaluate": 1.0}},
                 {"phase": "finetune", "seconds": {"finetune": 1.5, "evaluate": 1.0}}]
      return report.UnitResult(unit, 0, records, {"protocol": p})

    results = [result(units[0], 1.0, 0.9, 0.8, 1.0), result(units[1], 1.0, 0.5, 0.4, 1.0),
               result(units[2], 0.9, 0.9, 0.8, 0.9), result(units[3], 0.0, 0.9, 0.8, 0.0)]
    text = report.protocol_table(exp, results)
    main, sweep = text.split("Learning-rate sweeps")
    # Gaps in points: lr=0.1 -> (0 + 40 + 40 + 0)/4 = 20; lr=0.03 -> (10+0+0+10)/4 = 5; ssd 50.
    assert "| s | salun lr=0.03 | 90.00 | 90.00 | 80.00 | 90.00 | 5.00 | 2.00 | 1 |" in main
    assert "salun lr=0.1 " not in main and "| s | ssd | 0.00 |" in main
    assert "| 50.00 |" in main and "| s | salun lr=0.1 | 100.00 | 50.00 | 40.00 | 100.00 | 20.00" \
        in sweep
    assert "optimistic" in sweep
    assert "| s | salun | salun lr=0.03 | – | 5.00 | yes (own gap" in sweep

  def test_the_rate_is_selected_on_tuning_seeds_and_reported_on_the_others(self):
    """The tuning seeds pick lr=0.1 though the evaluation seeds favour 0.03: the report
    shows 0.1's evaluation numbers (an honest estimate), and the grid shows both gaps."""
    from experiments._spec import sweep_lr
    base = Experiment("x", "x", {"main": Original("digits", "small_cnn")},
                      (Unit("s", "retrain", "retrain"), Unit("s", "salun", "salun")), seeds=(0,))
    exp = sweep_lr(base, {"salun": (0.1, 0.03)})
    by_line = {u.line: u for u in exp.units}

    def result(line, ua, ra=0.9, ta=0.8, mia=1.0, seed=0):
      unit = by_line[line]
      records = [{"phase": "finetune", "seconds": {"finetune": 1.0}}]
      return report.UnitResult(unit, seed + unit.seed_offset, records,
                               {"protocol": {"UA": ua, "RA": ra, "TA": ta, "MIA": mia}})

    results = [result("retrain", 1.0), result("salun lr=0.1", 0.6), result("salun lr=0.03", 0.9),
               result("retrain (tuning)", 0.5), result("salun lr=0.1 (tuning)", 0.5),
               result("salun lr=0.03 (tuning)", 0.9)]
    text = report.protocol_table(exp, results)
    main, sweep = text.split("Learning-rate sweeps")
    # Evaluation gaps: lr=0.1 -> 40/4 = 10, lr=0.03 -> 10/4 = 2.5; tuning: 0 and 10.
    assert "| s | salun lr=0.1 | 60.00 | 90.00 | 80.00 | 100.00 | 10.00 |" in main
    assert "lr=0.03" not in main and "(tuning)" not in main
    assert "| s | salun | 0.1 | 0.00 | 10.00 | yes (tuning gap) |" in sweep
    assert "| s | salun | 0.03 | 10.00 | 2.50 |  |" in sweep
    assert "| s | retrain (tuning) | 50.00 |" in sweep and "TUNING seeds" in sweep


def test_a_swept_experiment_runs_its_tuning_seeds_and_reports_the_rate_they_pick(tmp_path):
  """--lr-grid through the runner: every rate on the evaluation seed and on tuning seed
  2000 beside a tuning Retrain; the protocol table reports the rate the tuning seed
  picks, with the evaluation seed's numbers."""
  from experiments._spec import sweep_lr
  from experiments.report import load, protocol
  unlearn = {"epochs": 1, "relearn_epochs": 0, "eval_limit": 200}
  base = Experiment("t", "tiny", {"main": Original("digits", "small_cnn", {"epochs": 2})},
                    (Unit("random 10%", "retrain", "retrain", "main",
                          {"forget_classes": None, "forget_random": 0.1, "relearn_epochs": 0}),
                     Unit("random 10%", "salun", "salun", "main",
                          {"forget_classes": None, "forget_random": 0.1, **unlearn})),
                    seeds=(0,), tables=("protocol",), figure=None)
  exp = sweep_lr(base, {"salun": (0.5, 0.001)})
  outcome = _runner.run(exp, tmp_path, progress=False)
  assert sorted(outcome["ran"]) == sorted(
      ["random 10% / retrain / seed 0", "random 10% / salun lr=0.5 / seed 0",
       "random 10% / salun lr=0.001 / seed 0", "random 10% / retrain (tuning) / seed 2000",
       "random 10% / salun lr=0.5 (tuning) / seed 2000",
       "random 10% / salun lr=0.001 (tuning) / seed 2000"])
  _, results = load.collect(tmp_path)
  lines = protocol.protocol_lines(exp, results, "random 10%")
  gaps = {(u.line, u.tuning): g[0] for u, _, g in lines}
  picked = min((0.5, 0.001), key=lambda lr: gaps[(f"salun lr={lr:g} (tuning)", True)])
  main = protocol.protocol_table(exp, results).split("Learning-rate sweeps")[0]
  assert f"| salun lr={picked:g} |" in main and "(tuning)" not in main
  assert f"| salun lr={({0.5, 0.001} - {picked}).pop():g} |" not in main
  text = report.build(tmp_path)["report"].read_text()
  assert f"| random 10% | salun | {picked:g} | " in text and "yes (tuning gap)" in text


def test_the_recipe_table_resolves_what_a_method_leaves_to_the_original():
  from experiments.report import load, tables
  trained = {"epochs": 5, "lr": 0.01, "batch_size": 128, "momentum": 0.9,
             "weight_decay": 5e-4}
  salun = {"name": "salun", "epochs": 5, "lr": 0.013, "batch_size": 256, "momentum": 0.9,
           "weight_decay": 5e-4, "fraction": 0.5, "score_batch_size": 256}
  fisher = {"name": "fisher_mask", "epochs": 5, "lr": "compressed", "compress_epochs": 5.0,
            "batch_size": None, "momentum": None, "weight_decay": None}
  retrain = {**fisher, "name": "retrain", "epochs": None, "lr": "original"}
  results = [load.UnitResult(Unit("class 0", m["name"], m["name"]), 0, [], None,
                             {"method": m}, trained) for m in (salun, fisher, retrain)]
  results.append(load.UnitResult(Unit("class 0", "pending", "finetune"), 0, [], None))
  exp = Experiment("x", "x", {"main": Original("digits", "small_cnn")},
                   tuple(r.unit for r in results))
  text = tables.recipe_table(exp, results)
  assert "| class 0 | salun | 5 | 0.013 | 256 | 0.9 | 0.0005 |" in text
  assert ("| class 0 | fisher_mask | 5 | original schedule in 5 epochs | 128 (original's) | "
          "0.9 (original's) | 0.0005 (original's) |") in text
  assert "| class 0 | retrain | 5 | original schedule (0.01) | 128 (original's) |" in text
  assert "pending" not in text


def test_the_original_table_says_how_it_was_trained_and_how_well_it_fits():
  from experiments.report import load, tables
  trained = {"dataset": "fashion_mnist", "model": "small_cnn", "train_limit": 4000,
             "epochs": 20, "lr": 0.1, "decay_epochs": [10, 15], "decay_factor": 0.1,
             "batch_size": 128, "momentum": 0.9, "weight_decay": 1e-4, "augment": False}
  last = {"train_accuracy": 0.995, "test_accuracy": 0.871}
  unit = Unit("random 10%", "retrain", "retrain")
  exp = Experiment("x", "x", {"main": Original("fashion_mnist", "small_cnn")}, (unit,))
  text = tables.original_table(exp, [load.UnitResult(unit, 0, [], None, None, trained, last)])
  assert ("| main | fashion_mnist | small_cnn | 4,000 | 20 | 0.1, x0.1 at epochs 10, 15 | 128 "
          "| 0.9 | 0.0001 | no | 99.50 | 87.10 | 12.4 |") in text
  assert tables.original_table(exp, []) == "No original has been trained yet."


def _finished(setting, method, seed, protocol, original):
  from experiments.report import load
  record = {"phase": "finetune", "epoch": 1, "seconds": {"finetune": 1.0}}
  return load.UnitResult(Unit(setting, method, method), seed, [record],
                         {"protocol": protocol, "original": original})


def test_the_protocol_table_starts_with_the_original_and_counts_the_pairs_told_apart():
  from experiments.report import protocol
  original = [{"forget_train_accuracy": 0.99, "remain_train_accuracy": 0.99,
               "test_accuracy": 0.87, "mia_efficacy": 0.02},
              {"forget_train_accuracy": 0.97, "remain_train_accuracy": 0.99,
               "test_accuracy": 0.87, "mia_efficacy": 0.04}]
  ua = {"retrain": (0.12, 0.14), "finetune": (0.02, 0.04), "salun": (0.121, 0.139)}
  results = [_finished("random 10%", m, s, {"UA": u[s], "RA": 0.99, "TA": 0.87, "MIA": 0.1},
                       original[s]) for m, u in ua.items() for s in (0, 1)]
  exp = Experiment("x", "x", {"main": Original("digits", "small_cnn")},
                   tuple(r.unit for r in results if r.seed == 0), seeds=(0, 1))
  text = protocol.protocol_table(exp, results)
  rows = [line for line in text.splitlines() if line.startswith("| random")]
  # UA 1 - 0.99 and 1 - 0.97 (mean 2), MIA 2 and 4 (mean 3); its gap to Retrain's mean
  # (UA 13, MIA 10) per seed, in points: (|1 - 13| + 0 + 0 + |2 - 10|) / 4 = 5, and 4.
  assert rows[0] == ("| random 10% | original (no unlearning) | 2.00 ± 1.41 | 99.00 ± 0.00 | "
                     "87.00 ± 0.00 | 3.00 ± 1.41 | 4.50 ± 0.71 |  | 2 |")
  assert rows[1].startswith("| random 10% | retrain |")
  # Gaps per seed: retrain 0.25, 0.25 (sd 0); finetune 2.75, 2.25; salun 0.225, 0.225:
  # retrain and salun differ by 0.025 with an SE of 0, told apart; finetune from both.
  assert "random 10%: 3 of 3" in text
  ps, gaps = protocol.original_protocol(exp, results, "random 10%")
  assert gaps == pytest.approx([5.0, 4.0]) and [p["MIA"] for p in ps] == [0.02, 0.04]
  assert protocol.original_protocol(exp, results, "class 0") is None
  assert protocol.separated_pairs([(None, None, [1.0, 3.0]), (None, None, [2.0, 4.0])]) == (0, 1)
  assert protocol.separated_pairs([(None, None, [1.0, 1.2]), (None, None, [2.0, 2.2])]) == (1, 1)
  assert protocol.separated_pairs([(None, None, [1.0]), (None, None, [2.0, 2.2])]) == (0, 0)


@pytest.mark.parametrize("name, n_seeds, dataset", [("privacy", 16, "fashion_mnist"),
                                                    ("privacy_cifar10", 128, "cifar10")])
def test_the_ensemble_experiments_share_one_forget_set_and_keep_confidences(name, n_seeds,
                                                                            dataset):
  """Every unit of an ensemble experiment draws the same forget set (forget_seed 0), keeps
  its final confidences, and Retrain has a second, reference ensemble at seeds + 1000."""
  from experiments.privacy import METHODS, REFERENCE, REFERENCE_OFFSET
  exp = importlib.import_module(f"experiments.{name}").get_config()
  assert len(exp.seeds) == n_seeds and {o.dataset for o in exp.originals.values()} == {
      dataset}
  assert {u.method for u in exp.units} == set(METHODS)
  for u in exp.units:
    assert u.unlearn["forget_seed"] == 0 and u.unlearn["confidences"]
    assert u.unlearn["forget_random"] == 0.1 and u.unlearn["forget_classes"] is None
    assert u.unlearn["keep_checkpoints"] is False   # N models, no N checkpoints
  ref = [u for u in exp.units if u.line == REFERENCE]
  assert len(ref) == 1 and ref[0].method == "retrain" and ref[0].seed_offset == REFERENCE_OFFSET
  if name == "privacy_cifar10":   # each method at its own recipe, SalUn's original
    assert all("epochs" not in u.unlearn and "lr" not in u.unlearn for u in exp.units)
    train = exp.originals["main"].train
    assert (train["epochs"], train["decay_epochs"], train["augment"]) == (182, (91, 136), True)
    assert "holdout_seed" not in train
