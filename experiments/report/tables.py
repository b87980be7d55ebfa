"""The report's Markdown tables by name (:data:`TABLES`; mean +- std over seeds): the
original, the paper's readouts, wall times, recipes; the protocol's view is
:mod:`experiments.report.protocol`."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from experiments._spec import Experiment
from experiments.report.format import markdown_table, mean_std
from experiments.report.load import UnitResult, grouped, settings_of
from experiments.report.protocol import protocol_table

LABELS = {"forget_test_accuracy": "forget test acc", "remain_test_accuracy": "remain test acc",
          "test_accuracy": "test acc", "noise_accuracy": "noise acc"}


PHASE_ORDER = ("score", "mask", "noise", "dampen", "init", "finetune", "evaluate", "relearn")


def final_table(exp: Experiment, results) -> str:
  a, b = exp.rows
  header = ["setting", "method", f"{LABELS[a]}, edit", f"{LABELS[a]}, final",
            f"{LABELS[b]}, edit", f"{LABELS[b]}, final", "MIA member rate", "relearn steps",
            "seeds"]
  rows = []
  groups = grouped(results)
  for unit in exp.units:
    g = groups.get((unit.setting, unit.line))
    if not g:
      continue
    s = [r.summary for r in g]
    relearn = [x.get("relearn_steps") for x in s if "relearn_epochs" in x]
    relearn_text = "–" if not relearn else ", ".join(
        ">max" if v is None else str(v) for v in relearn)
    rows.append([unit.setting, unit.line, mean_std([x["mask_only"].get(a) for x in s]),
                 mean_std([x["final"].get(a) for x in s]),
                 mean_std([x["mask_only"].get(b) for x in s]),
                 mean_std([x["final"].get(b) for x in s]),
                 mean_std([x["final"].get("mia_member_rate") for x in s]), relearn_text,
                 str(len(s))])
  originals = [r.summary["original"] for r in results if r.summary is not None]
  note = ""
  if originals:
    note = (f"\n\nOriginal model: {LABELS[a]} {mean_std([o.get(a) for o in originals])}, "
            f"{LABELS[b]} {mean_std([o.get(b) for o in originals])}, MIA member rate "
            f"{mean_std([o.get('mia_member_rate') for o in originals])}.")
  return ("Accuracies in %, mean ± std over seeds. *edit*: right after the method's edit, "
          "before fine-tuning; *final*: after the last fine-tuning epoch. MIA member rate: "
          "% of forget examples the attack calls members (compare with retrain). Relearn steps: "
          "optimiser steps on the forget set until a batch's loss is back at the original "
          "model's forget loss, per seed.\n\n"
          + markdown_table(header, rows) + note)


def mask_only_table(exp: Experiment, results) -> str:
  a, b = exp.rows
  by_line: dict[str, list[dict]] = defaultdict(list)
  originals: list[dict] = []
  settings = set()
  for r in results:
    if r.summary is None or r.unit.method == "retrain":   # its "edit" is a fresh init
      continue
    by_line[r.unit.line].append(r.summary["mask_only"])
    originals.append(r.summary["original"])
    settings.add(r.unit.setting)
  if not by_line:
    return "(no finished unit)"
  orig_b = np.mean([o[b] for o in originals if o.get(b) is not None])
  rows = [["original model", mean_std([o.get(a) for o in originals]),
           mean_std([o.get(b) for o in originals]), "100.0"]]
  for line in dict.fromkeys(u.line for u in exp.units):
    if line in by_line:
      vals = by_line[line]
      kept = np.mean([v[b] for v in vals if v.get(b) is not None]) / orig_b * 100
      rows.append([line, mean_std([v.get(a) for v in vals]), mean_std([v.get(b) for v in vals]),
                   f"{kept:.1f}"])
  return (f"Right after the edit, no fine-tuning; mean ± std over {len(settings)} setting(s) "
          "and their seeds, in %. *kept*: remain accuracy as % of the original model's.\n\n"
          + markdown_table(["method", LABELS[a], LABELS[b], "kept"], rows))


def outliers_table(exp: Experiment, results) -> str:
  groups = grouped(results)
  settings = settings_of(exp)
  header = ["method"] + [f"{s}: {c}" for s in settings for c in ("best test acc",
                                                                  "best noise acc")]
  rows = []
  for line in dict.fromkeys(u.line for u in exp.units):
    row = [line]
    for s in settings:
      g = groups.get((s, line), [])
      row += [mean_std([r.summary.get("best_test_accuracy") for r in g]),
              mean_std([r.summary.get("best_noise_accuracy") for r in g])]
    rows.append(row)
  return ("Best accuracy within T epochs (the edit included), in %, mean ± std over seeds; "
          "noise acc: the removed points with their true labels.\n\n"
          + markdown_table(header, rows))


def volatility_table(exp: Experiment, results) -> str:
  a, b = exp.rows
  header = ["setting", "method", f"{LABELS[a]}: mean abs change", f"{LABELS[a]}: adverse",
            f"{LABELS[b]}: mean abs change", f"{LABELS[b]}: adverse"]
  rows = []
  groups = grouped(results)
  for unit in exp.units:
    g = groups.get((unit.setting, unit.line))
    if not g or g[0].summary["epochs"] == 0:
      continue
    vol = [r.summary.get("volatility", {}) for r in g]
    rows.append([unit.setting, unit.line] + [
        mean_std([v.get(k, {}).get(kind) for v in vol]) for k in (a, b) for kind in ("abs",
                                                                                  "adverse")])
  return ("Volatility of each curve over epochs 0..T (Section 4.1), in accuracy points: the "
          "mean absolute change per epoch, and the mean adverse change (remain drops, forget "
          "rises). The paper's literal formula telescopes to (last - first)/(T-1); it is in "
          "summary.json as `signed`.\n\n" + markdown_table(header, rows))


def seconds_table(exp: Experiment, results) -> str:
  groups = grouped(results)
  phases = [p for p in PHASE_ORDER if any(p in r.summary["seconds"] for g in groups.values()
                                          for r in g)]
  rows = []
  for unit in exp.units:
    g = groups.get((unit.setting, unit.line))
    if not g:
      continue
    rows.append([unit.setting, unit.line] + [
        mean_std([r.summary["seconds"].get(p) for r in g], percent=False) for p in phases])
  return ("Wall time per phase in seconds, mean ± std over seeds (evaluate: all readouts, "
          "the original model's included).\n\n"
          + markdown_table(["setting", "method"] + phases, rows))


def recipe_of(result: UnitResult) -> list[str] | None:
  """How a unit trained, as run: its epochs, rate, batch, momentum and weight decay, the
  ones its method leaves to the original training (None) resolved from that training."""
  if result.config is None or result.trained is None or not isinstance(
      result.config.get("method"), dict):
    return None
  method, trained = result.config["method"], result.trained
  epochs = trained["epochs"] if method["epochs"] is None else method["epochs"]
  lr = method["lr"]
  if lr == "compressed":
    lr = f"original schedule in {method['compress_epochs']:g} epochs"
  elif lr == "original":
    lr = f"original schedule ({trained['lr']:g})"
  else:
    lr = f"{lr:g}"

  def own(name):
    return (f"{trained[name]:g} (original's)" if method[name] is None
            else f"{method[name]:g}")
  return [str(epochs), lr, own("batch_size"), own("momentum"), own("weight_decay")]


def recipe_table(exp: Experiment, results) -> str:
  """One row per line and setting: the training recipe its units ran (their config.json)."""
  rows, seen = [], set()
  for r in results:
    key = (r.unit.setting, r.unit.line)
    recipe = recipe_of(r)
    if key in seen or recipe is None:
      continue
    seen.add(key)
    rows.append([r.unit.setting, r.unit.line, *recipe])
  if not rows:
    return "No unit has started."
  return ("Each line's training as run (its method's recipe, `python -m fmjax unlearn "
          "--method NAME --help`; \"original's\" = the original model's training).\n\n"
          + markdown_table(["setting", "line", "epochs", "rate", "batch", "momentum",
                            "weight decay"], rows))


def _schedule(trained: dict) -> str:
  decays = trained.get("decay_epochs") or ()
  text = f"{trained['lr']:g}"
  if decays:
    text += f", x{trained['decay_factor']:g} at epochs {', '.join(f'{d:g}' for d in decays)}"
  return text


def original_table(exp: Experiment, results) -> str:
  """How each original model was trained and how well it fits its training set: its
  recipe, the last epoch's training accuracy (running mean over the epoch's batches) and
  its test accuracy; a gap of a few points means it memorised little, and forgetting a
  random subset of its training set is then hard to tell from doing nothing."""
  rows, seen = [], set()
  for r in results:
    key = r.unit.original
    if key in seen or r.trained is None:
      continue
    seen.add(key)
    t, last = r.trained, r.trained_last or {}
    train_acc, test_acc = last.get("train_accuracy"), last.get("test_accuracy")
    fit = (f"{100 * (train_acc - test_acc):.1f}" if None not in (train_acc, test_acc) else "")
    rows.append([key, t["dataset"], t["model"],
                 "all" if t.get("train_limit") is None else f"{t['train_limit']:,}",
                 f"{t['epochs']:g}", _schedule(t), str(t["batch_size"]), f"{t['momentum']:g}",
                 f"{t['weight_decay']:g}", "yes" if t.get("augment") else "no",
                 mean_std([train_acc]), mean_std([test_acc]), fit])
  if not rows:
    return "No original has been trained yet."
  return ("The original models as trained (their config.json and last training record); "
          "train acc is the running mean over the last epoch's batches, in %; gap = train "
          "- test, in points.\n\n" + markdown_table(
              ["original", "dataset", "model", "examples", "epochs", "rate", "batch",
               "momentum", "weight decay", "augment", "train acc", "test acc", "gap"], rows))


TABLES = {"original": ("The original model", original_table),
          "final": ("Final readouts", final_table), "mask_only": ("Mask only", mask_only_table),
          "outliers": ("Outlier deletion", outliers_table),
          "volatility": ("Volatility", volatility_table),
          "seconds": ("Wall time", seconds_table),
          "protocol": ("The unlearning protocol", protocol_table),
          "recipes": ("Training recipes", recipe_table)}
