"""Unlearning runs on real digits: the paper's mask-only claim, resume, bad input, CLI."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from fmjax import __main__ as cli
from fmjax import checkpoints, training, unlearning
from fmjax.methods import FisherMask, UnlearnTask, defaults, registry

# `digits` and `trained` (the small CNN, 3 epochs on digits) come from conftest.py.


def _run(trained, digits, workdir, method, progress=False, **kw):
  kw = {"epochs": 0, "relearn_epochs": 0, "mia": False, **kw}
  config = unlearning.make_config(trained, method, **kw)
  return unlearning.unlearn(config, workdir, dataset=digits, progress=progress)


# The progress bar each method's scoring shows (tqdm writes its description to stderr).
SCORING_BARS = {"fisher_noise": "true Fisher of the remain set",
                "grad_mask": "integrated gradients, 2 layers", "influence": "conjugate gradients",
                "activation_mask": "channel means", "tfidf": "channel means"}


def test_fisher_mask_forgets_the_class_and_keeps_the_rest_without_fine_tuning(
    tmp_path, trained, digits):
  fisher = _run(trained, digits, tmp_path / "f", "fisher_mask").summary
  random = _run(trained, digits, tmp_path / "r", "random_mask").summary
  orig, f, r = fisher["original"], fisher["mask_only"], random["mask_only"]
  assert orig["forget_test_accuracy"] > 0.9 and orig["remain_test_accuracy"] > 0.9
  # Forgotten: class-0 test accuracy falls from >90% to at most 10% (one digit in ten
  # is what a model with no class-0 knowledge gets at most by chance here; measured 0%),
  # and at least 40 points below RandomMask at the same ratio (measured ~96%).
  assert f["forget_test_accuracy"] <= 0.10
  assert r["forget_test_accuracy"] - f["forget_test_accuracy"] >= 0.40
  # ...while the other classes keep their accuracy: within 10 points of the original
  # (measured ~3 points). A collapsed model predicting one class would score <= 11%.
  assert f["remain_test_accuracy"] >= orig["remain_test_accuracy"] - 0.10
  assert fisher["mask_only"]["masked_fraction"] == pytest.approx(0.04, abs=1e-5)


@pytest.mark.parametrize("method", [m for m in registry() if m not in ("fisher_mask",
                                                                         "random_mask")])
def test_every_method_runs_and_records_its_phases(tmp_path, trained, digits, method, capsys):
  epochs = 1 if defaults(method).trains else 0
  cheap = unlearning.for_method(method, {"ig_steps": 4, "cg_iters": 3, "hessian_examples": 128,
                                         "score_limit": 300})
  result = _run(trained, digits, tmp_path / method, method, epochs=epochs, mia=True,
                relearn_epochs=2, progress=True, **cheap)
  if method in SCORING_BARS:
    assert SCORING_BARS[method] in capsys.readouterr().err
  phases = [r["phase"] for r in result.records]
  assert phases == ["original", "edit"] + ["finetune"] * epochs + ["relearn"]
  for r in result.records[:-1]:   # every readout holds both attacks (their values: the
    assert 0.0 <= r["forget_test_accuracy"] <= 1.0   # Evaluator's test in test_successors)
    assert 0.0 <= r["mia_member_rate"] <= 1.0 and 0.0 <= r["mia_efficacy"] <= 1.0
    assert 0.0 <= r["mia_attack_accuracy"] <= 1.0
  logged = checkpoints.read_metrics(tmp_path / method)
  assert [r["phase"] for r in logged] == phases
  summary = json.loads((tmp_path / method / "summary.json").read_text())
  assert summary["method"] == method and set(summary["volatility"]) >= {
      "forget_test_accuracy", "remain_test_accuracy"}
  assert summary["protocol"]["MIA"] == result.records[-2]["mia_efficacy"]
  # The seconds are the records' phases summed; the unlearning itself took time.
  want: dict = {}
  for r in result.records:
    for k, v in r.get("seconds", {}).items():
      want[k] = want.get(k, 0.0) + v
  assert summary["seconds"] == pytest.approx(want) and "evaluate" in want
  assert unlearning.run_time(result.records) > 0
  assert (want.get("finetune", 0) > 0) == (epochs > 0)


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, trained, digits):
  kw = {"epochs": 2, "relearn_epochs": 0, "mia": False, "freeze_mask": True}
  config = unlearning.make_config(trained, "fisher_mask", **kw)
  whole = unlearning.unlearn(config, tmp_path / "whole", dataset=digits, progress=False)
  part = unlearning.unlearn(config, tmp_path / "part", dataset=digits, progress=False,
                            stop_after_epoch=1)
  assert [r["phase"] for r in part.records] == ["original", "edit", "finetune"]
  resumed = unlearning.unlearn(config, tmp_path / "part", dataset=digits, progress=False)
  for a, b in zip(jax.tree.leaves(whole.state.params), jax.tree.leaves(resumed.state.params),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  assert [r["epoch"] for r in resumed.records] == [None, 0, 1, 2]
  assert resumed.summary["final"] == whole.summary["final"]
  # Rerunning a finished run recomputes nothing and keeps its records.
  again = unlearning.unlearn(config, tmp_path / "part", dataset=digits, progress=False)
  assert again.records == resumed.records


def test_last_epoch_readouts_only_skip_the_middle_and_change_no_number(tmp_path, trained,
                                                                       digits):
  kw = {"epochs": 3, "relearn_epochs": 0, "mia": True}
  every = unlearning.unlearn(unlearning.make_config(trained, "fisher_mask", **kw),
                             tmp_path / "all", dataset=digits, progress=False)
  config = unlearning.make_config(trained, "fisher_mask", eval_epochs="last", **kw)
  last = unlearning.unlearn(config, tmp_path / "last", dataset=digits, progress=False)
  for a, b in zip(jax.tree.leaves(every.state.params), jax.tree.leaves(last.state.params),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  readout = set(every.records[-1]) - {"seconds"}
  # The original's, the edit's and the last epoch's readouts are there, and equal ...
  for i in (0, 1, 4):
    assert {k: last.records[i][k] for k in readout if k in every.records[i]} == {
        k: every.records[i][k] for k in readout if k in every.records[i]}
  # ... epochs 1 and 2 carry their loss and rate, no readout; no curve, no volatility.
  for r in last.records[2:4]:
    assert "test_accuracy" not in r and "mia_efficacy" not in r and "train_loss" in r
  assert last.summary["final"] == every.summary["final"]
  assert last.summary["protocol"] == every.summary["protocol"]
  assert "volatility" not in last.summary and "volatility" in every.summary
  with pytest.raises(ValueError, match="eval_epochs .--eval-epochs. must be 'all'"):
    unlearning.make_config(trained, "fisher_mask", eval_epochs="every")


def test_an_ensemble_shares_its_forget_set_and_stores_each_models_confidences(
    tmp_path, trained, digits):
  from fmjax import evaluation, models, privacy
  kw = {"epochs": 1, "relearn_epochs": 0, "mia": False, "forget_classes": None,
        "forget_random": 0.1, "forget_seed": 5, "eval_limit": 100, "test_limit": 150,
        "confidences": True}
  runs = [unlearning.unlearn(unlearning.make_config(trained, "finetune", seed=s, **kw),
                             tmp_path / str(s), dataset=digits, progress=False)
          for s in (1, 2)]
  stored = [dict(np.load(tmp_path / str(s) / "confidences.npz")) for s in (1, 2)]
  # One forget set and one remain sample for both seeds: forget_seed draws them.
  np.testing.assert_array_equal(stored[0]["forget_index"], stored[1]["forget_index"])
  np.testing.assert_array_equal(stored[0]["remain_index"], stored[1]["remain_index"])
  np.testing.assert_array_equal(stored[0]["test_index"], stored[1]["test_index"])
  assert stored[0]["test"].size == 150 == len(set(stored[0]["test_index"]))
  assert stored[0]["forget_index"].size == stored[0]["forget"].size == 100   # eval_limit
  # The stored numbers are the final model's, recomputed here from its weights.
  state, idx = runs[0].state, stored[0]["forget_index"]
  images = evaluation.normalize(digits.train_images[idx], digits.mean, digits.std)
  logits = models.get_model("small_cnn", digits.num_classes).apply(
      {"params": state.params, **state.model_state}, images, train=False)
  np.testing.assert_allclose(stored[0]["forget"],
                             privacy.logit_confidence(np.asarray(logits),
                                                      digits.train_labels[idx]), rtol=1e-4,
                             atol=1e-4)
  assert not np.array_equal(stored[0]["forget"], stored[1]["forget"])   # two models
  rec = runs[0].summary["confidences"]
  assert rec["file"] == "confidences.npz" and rec["examples"]["test"] == 150
  # A damaged file is rewritten by the next run, identical; a run without forget_seed
  # draws its forget set with its own seed.
  (tmp_path / "1" / "confidences.npz").write_bytes(b"damaged")
  again = unlearning.unlearn(unlearning.make_config(trained, "finetune", seed=1, **kw),
                             tmp_path / "1", dataset=digits, progress=False)
  np.testing.assert_equal(dict(np.load(tmp_path / "1" / "confidences.npz")), stored[0])
  assert ({k: v for k, v in again.summary.items() if k != "seconds"}
          == {k: v for k, v in runs[0].summary.items() if k != "seconds"})
  own = unlearning.unlearn(unlearning.make_config(trained, "finetune", seed=1,
                                                  **{**kw, "forget_seed": None}),
                           tmp_path / "own", dataset=digits, progress=False)
  assert not np.array_equal(np.load(tmp_path / "own" / "confidences.npz")["forget_index"],
                            stored[0]["forget_index"])
  assert own.summary["confidences"]["sha256"] != rec["sha256"]


def test_per_epoch_confidences_are_stored_committed_and_resume_to_the_same_files(
    tmp_path, trained, digits):
  kw = {"epochs": 2, "relearn_epochs": 0, "mia": False, "forget_classes": None,
        "forget_random": 0.1, "forget_seed": 5, "eval_limit": 60, "test_limit": 80,
        "eval_epochs": "last", "confidences": True, "confidence_epochs": "all"}
  config = unlearning.make_config(trained, "finetune", seed=1, **kw)
  whole = unlearning.unlearn(config, tmp_path / "whole", dataset=digits, progress=False)
  epochs = whole.summary["confidences"]["epochs"]
  assert list(epochs) == ["0", "1", "2"]
  files = {k: dict(np.load(tmp_path / "whole" / v["file"])) for k, v in epochs.items()}
  # The last epoch's file is the final model's; the edit's (Finetune: the original) differs.
  np.testing.assert_equal(files["2"], dict(np.load(tmp_path / "whole" / "confidences.npz")))
  assert not np.array_equal(files["0"]["forget"], files["2"]["forget"])
  assert [r.get("confidences", {}).get("file") for r in whole.records[1:4]] == [
      "confidences-epoch0.npz", "confidences-epoch1.npz", "confidences-epoch2.npz"]
  # Killed after epoch 1 and restarted: the same files, the same records.
  unlearning.unlearn(config, tmp_path / "cut", dataset=digits, progress=False,
                     stop_after_epoch=1)
  assert not (tmp_path / "cut" / "confidences-epoch2.npz").exists()
  resumed = unlearning.unlearn(config, tmp_path / "cut", dataset=digits, progress=False)
  assert resumed.summary["confidences"]["epochs"] == epochs
  for v in epochs.values():
    np.testing.assert_equal(dict(np.load(tmp_path / "cut" / v["file"])),
                            dict(np.load(tmp_path / "whole" / v["file"])))
  # The default stores only the final model's, and writes no setting into config.json.
  last = unlearning.make_config(trained, "finetune", seed=1,
                                **{**kw, "confidence_epochs": "last"})
  assert "confidence_epochs" not in last.to_json() and config.to_json()[
      "confidence_epochs"] == "all"
  with pytest.raises(ValueError, match="confidence_epochs='all' stores confidences after "
                                       "every epoch; set confidences=True too"):
    unlearning.make_config(trained, "finetune", **{**kw, "confidences": False})
  with pytest.raises(ValueError, match="confidence_epochs must be 'last'"):
    unlearning.make_config(trained, "finetune", **{**kw, "confidence_epochs": "every"})


def test_an_ensemble_member_drops_its_checkpoints_once_finished(tmp_path, trained, digits,
                                                                  monkeypatch):
  """keep_checkpoints=False: the same records, summary and confidences as a kept run, no
  checkpoints after it; a kill between its summary and the deletion leaves them, and the
  rerun deletes them; a rerun reports it from its files (no state, nothing rewritten); a
  damaged confidences file reruns the unit from its start, to the same numbers."""
  from fmjax.run import phases
  kw = {"epochs": 2, "relearn_epochs": 0, "mia": False, "forget_classes": None,
        "forget_random": 0.1, "forget_seed": 5, "eval_limit": 60, "test_limit": 80,
        "eval_epochs": "last", "confidences": True}
  kept_cfg = unlearning.make_config(trained, "finetune", seed=1, **kw)
  config = unlearning.make_config(trained, "finetune", seed=1, keep_checkpoints=False, **kw)
  assert "keep_checkpoints" not in kept_cfg.to_json()   # older runs' config.json still match
  assert config.to_json()["keep_checkpoints"] is False
  kept = unlearning.unlearn(kept_cfg, tmp_path / "kept", dataset=digits, progress=False)
  assert (tmp_path / "kept" / "checkpoints").is_dir()
  with monkeypatch.context() as m:   # killed after its summary, before the deletion
    m.setattr(phases, "drop_checkpoints", lambda run: None)
    out = unlearning.unlearn(config, tmp_path / "d", dataset=digits, progress=False)
  assert (tmp_path / "d" / "checkpoints").is_dir()
  assert checkpoints.untimed(out.records) == checkpoints.untimed(kept.records)
  np.testing.assert_equal(dict(np.load(tmp_path / "d" / "confidences.npz")),
                          dict(np.load(tmp_path / "kept" / "confidences.npz")))
  files = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file()}
  rerun = unlearning.unlearn(config, tmp_path / "d", dataset=digits, progress=False)
  assert rerun.records == out.records and not (tmp_path / "d" / "checkpoints").exists()
  # Finished, no checkpoint: reported from its files, nothing recomputed or rewritten.
  again = unlearning.unlearn(config, tmp_path / "d", dataset=digits, progress=False)
  assert again.state is None and again.records == out.records
  assert again.summary == json.loads(json.dumps(out.summary))
  assert {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if p.is_file()} == files
  assert not (tmp_path / "d" / "checkpoints").exists()
  # No checkpoint to recompute the confidences from: the unit runs again from its edit.
  (tmp_path / "d" / "confidences.npz").write_bytes(b"damaged")
  redone = unlearning.unlearn(config, tmp_path / "d", dataset=digits, progress=False)
  assert redone.state is not None   # recomputed, not read back
  assert checkpoints.untimed(redone.records) == checkpoints.untimed(out.records)
  np.testing.assert_equal(dict(np.load(tmp_path / "d" / "confidences.npz")),
                          dict(np.load(tmp_path / "kept" / "confidences.npz")))
  assert not (tmp_path / "d" / "checkpoints").exists()


def test_outliers_and_no_remain_settings(tmp_path, digits):
  config = training.default_config("digits", "small_cnn", epochs=2, batch_size=64, lr=0.05,
                                   noise_fraction=0.2)
  training.train(config, tmp_path / "noisy", dataset=digits, progress=False)
  out = _run(str(tmp_path / "noisy"), digits, tmp_path / "o", "fisher_mask",
             forget_classes=None, epochs=1)
  final = out.summary["final"]
  assert "noise_accuracy" in final and "forget_test_accuracy" not in final
  assert out.summary["best_noise_accuracy"] >= final["noise_accuracy"]
  with pytest.raises(ValueError, match="whole classes only"):
    _run(str(tmp_path / "noisy"), digits, tmp_path / "t", "tfidf", forget_classes=None)
  with pytest.raises(ValueError, match="omit the forget classes"):
    _run(str(tmp_path / "noisy"), digits, tmp_path / "t2", "fisher_mask")


def test_forget_data_only(tmp_path, trained, digits):
  only = _run(trained, digits, tmp_path / "a", "activation_mask", no_remain=True)
  assert only.summary["mask_only"]["forget_test_accuracy"] is not None
  with pytest.raises(ValueError, match="needs remain data"):
    _run(trained, digits, tmp_path / "b", "finetune", no_remain=True)
  with pytest.raises(ValueError, match="fine-tuning needs remain data"):
    _run(trained, digits, tmp_path / "c", "fisher_mask", no_remain=True, epochs=1)
  limited = _run(trained, digits, tmp_path / "d", "fisher_mask", remain_limit=50, epochs=1)
  assert limited.summary["epochs"] == 1


def test_bad_input_is_refused_with_the_fix(tmp_path, trained, digits):
  with pytest.raises(ValueError, match="known methods: retrain, finetune"):
    unlearning.make_config(trained, "scrubber")
  with pytest.raises(ValueError, match=r"do not exist: digits has classes 0\.\.9"):
    _run(trained, digits, tmp_path / "x", "fisher_mask", forget_classes=(12,))
  with pytest.raises(ValueError, match="forget set is empty"):
    UnlearnTask(np.zeros((2, 1, 1, 1), np.uint8), np.zeros(2), np.array([], int), None,
                np.zeros((1, 1, 1, 1), np.uint8), np.zeros(1), 2, 0.0, 1.0)
  # freeze_mask is a masking method's setting: finetune has none, and says which it has.
  with pytest.raises(ValueError, match=r"unknown setting\(s\) \['freeze_mask'\] for finetune; "
                                       "its settings: batch_size, compress_epochs"):
    _run(trained, digits, tmp_path / "y", "finetune", freeze_mask=True, epochs=1)
  with pytest.raises(FileNotFoundError, match="train the original model first"):
    unlearning.make_config(tmp_path / "nothing", "fisher_mask")
  # A checkpoint whose model does not match its config.
  fake = tmp_path / "fake"
  shutil.copytree(trained, fake)
  raw = json.loads((fake / "config.json").read_text())
  (fake / "config.json").write_text(json.dumps({**raw, "model": "resnet20"}))
  with pytest.raises(ValueError, match="does not match its config .model 'resnet20'"):
    _run(str(fake), digits, tmp_path / "z", "fisher_mask")
  # A work directory holding another run is refused.
  _run(trained, digits, tmp_path / "w", "random_mask")
  with pytest.raises(ValueError, match=r"holds a run with a different config "
                                       r"\(method\.ratio: 0\.04 -> 0\.1\)\. Use another"):
    _run(trained, digits, tmp_path / "w", "random_mask", ratio=0.1)


def test_make_config_defaults(trained):
  config = unlearning.make_config(trained, "fisher_mask")
  # MNIST-like data: R = 0.04; an 8x8 image allows a Fisher block of 128 examples
  assert config.method == FisherMask(ratio=0.04, fisher_chunk=128)
  assert config.forget_classes == (0,) and config.method.lr == "compressed"
  assert unlearning.default_ratio("cifar10") == 0.02
  roundtrip = unlearning.UnlearnConfig.from_json(config.to_json())
  assert roundtrip == config


def test_cli_unlearn(tmp_path, trained, capsys):
  code = cli.main(["unlearn", "--checkpoint", trained, "--method", "fisher_mask",
                   "--workdir", str(tmp_path / "cli"), "--epochs", "0", "--relearn-epochs", "0",
                   "--no-mia", "--quiet"])
  assert code == 0
  assert capsys.readouterr().out.startswith("fisher_mask: forget test 0.0")
  with pytest.raises(SystemExit) as e:   # argparse lists the methods
    cli.main(["unlearn", "--checkpoint", trained, "--method", "nope",
              "--workdir", str(tmp_path / "bad")])
  assert e.value.code == 2 and "invalid choice: 'nope' (choose from" in capsys.readouterr().err
  assert not (tmp_path / "bad").exists()


def test_a_config_from_before_methods_owned_their_settings_is_refused_by_name(tmp_path,
                                                                             trained, digits):
  old = {"checkpoint": trained, "method": "salun", "settings": {"salun_fraction": 0.5},
         "epochs": None, "lr": "compressed", "batch_size": None, "seed": 0}
  work = tmp_path / "old"
  work.mkdir()
  (work / "config.json").write_text(json.dumps(old))
  with pytest.raises(ValueError, match=r"config.json cannot be resumed: it was written by "
                                       r"fmjax before methods owned their settings"):
    _run(trained, digits, work, "salun", epochs=1)
  assert sorted(p.name for p in work.iterdir()) == ["config.json"]   # nothing else written
  with pytest.raises(ValueError, match="this unlearning config.json cannot be read"):
    unlearning.UnlearnConfig.from_json(old)
  new = unlearning.make_config(trained, "salun").to_json()
  assert new["method"]["name"] == "salun" and new["method"]["batch_size"] == 256
  assert unlearning.UnlearnConfig.from_json(new) == unlearning.make_config(trained, "salun")
