"""The report's Markdown tables (mean +- std over seeds), the protocol table among them."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from experiments._spec import Experiment
from experiments.report.load import UnitResult, grouped, settings_of
from fmjax import readouts, unlearning

LABELS = {"forget_test_accuracy": "forget test acc", "remain_test_accuracy": "remain test acc",
          "test_accuracy": "test acc", "noise_accuracy": "noise acc"}


PHASE_ORDER = ("score", "mask", "noise", "dampen", "init", "finetune", "evaluate", "relearn")


def mean_std(values: Sequence[float | None], *, percent: bool = True) -> str:
  vals = np.asarray([v for v in values if v is not None], np.float64)
  if vals.size == 0:
    return "–"
  scale = 100.0 if percent else 1.0
  mean = vals.mean() * scale
  if vals.size == 1:
    return f"{mean:.2f}"
  return f"{mean:.2f} ± {vals.std(ddof=1) * scale:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


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


PROTOCOL_KEYS = ("UA", "RA", "TA", "MIA")


def protocol_of(result: UnitResult) -> dict | None:
  """The protocol's readouts of a finished unit (UA, RA, TA, MIA, RTE), from its
  records, so that runs made before summaries carried them get them too."""
  if result.summary is None:
    return None
  rte = unlearning.run_time(result.records)
  if "protocol" in result.summary:
    return {**result.summary["protocol"], "RTE": rte}
  final = [r for r in result.records if r["phase"] in ("edit", "finetune")][-1]
  setting = "class" if final.get("remain_test_accuracy") is not None else "random"
  return {**readouts.protocol_readouts(final, setting=setting), "RTE": rte}


def mean_of(values) -> float | None:
  vals = [v for v in values if v is not None]
  return float(np.mean(vals)) if vals else None


def gap_to(p: dict, ref: dict) -> float | None:
  """Average gap in points: mean over UA, RA, TA, MIA of |p - ref| (SalUn's 'Avg. Gap')."""
  diffs = [abs(p[k] - ref[k]) for k in PROTOCOL_KEYS
           if p.get(k) is not None and ref.get(k) is not None]
  return 100.0 * float(np.mean(diffs)) if diffs else None


def protocol_lines(exp: Experiment, results, setting: str):
  """Per line of ``setting``: ``(unit, [protocol per seed], gaps per seed)``; gaps are
  to Retrain's mean over seeds (a tuning line's to the tuning Retrain's; None without
  that Retrain in the setting)."""
  groups = grouped(results)
  lines = []
  for unit in exp.units:
    if unit.setting != setting or (setting, unit.line) not in groups:
      continue
    lines.append((unit, [protocol_of(r) for r in groups[(setting, unit.line)]]))
  ref_mean = {}
  for tuning in (False, True):
    ref = next((ps for u, ps in lines if u.method == "retrain" and u.tuning == tuning), None)
    ref_mean[tuning] = None if ref is None else {k: mean_of(p.get(k) for p in ref)
                                                 for k in PROTOCOL_KEYS}
  out = []
  for unit, ps in lines:
    m = ref_mean[unit.tuning]
    out.append((unit, ps, [None if m is None else gap_to(p, m) for p in ps]))
  return out


def _mean_gap(item) -> float:
  g = mean_of(item[2])
  return math.inf if g is None else g


def selected_rates(lines) -> dict[str, float | None]:
  """Per sweep group, the rate its tuning lines select: the smallest mean gap to the
  tuning Retrain (the first on a tie). Groups without tuning lines are absent."""
  best: dict[str, tuple] = {}
  for item in lines:
    u = item[0]
    if u.tuning and u.group is not None and (u.group not in best
                                             or _mean_gap(item) < _mean_gap(best[u.group])):
      best[u.group] = item
  return {g: item[0].unlearn.get("lr") for g, item in best.items()}


def best_of_groups(lines):
  """The reported lines: each sweep group's selected rate at the group's first position,
  other lines as they are; tuning lines (and the tuning Retrain) left out. A group with
  tuning lines reports the evaluation line of the rate they select
  (:func:`selected_rates`); one without selects the smallest mean gap of its own lines
  (the first on a tie, a line without a gap last; optimistic). A group whose selected
  rate has no finished evaluation line yet is not shown."""
  chosen = selected_rates(lines)
  best: dict[str, tuple] = {}
  for item in lines:
    u = item[0]
    if u.tuning or u.group is None:
      continue
    if u.group in chosen:
      if u.unlearn.get("lr") == chosen[u.group]:
        best[u.group] = item
    elif u.group not in best or _mean_gap(item) < _mean_gap(best[u.group]):
      best[u.group] = item
  out, shown = [], set()
  for item in lines:
    group = item[0].group
    if item[0].tuning:
      continue
    if group is None:
      out.append(item)
    elif group not in shown and group in best:
      shown.add(group)
      out.append(best[group])
  return out


def sweep_grid(setting: str, lines) -> list[list[str]]:
  """Rows of the learning-rate grid: per rate, the mean gap on the tuning seeds (to the
  tuning Retrain) and on the evaluation seeds (to the evaluated Retrain), and which rate
  was selected (on the tuning gap where there is one)."""
  chosen = selected_rates(lines)
  reported = {id(x) for x in best_of_groups(lines)}
  tuning = {(x[0].group, x[0].unlearn.get("lr")): x for x in lines if x[0].tuning}
  rows = []
  for item in lines:
    u = item[0]
    if u.group is None or u.tuning:
      continue
    t = tuning.get((u.group, u.unlearn.get("lr")))
    how = "tuning gap" if u.group in chosen else "own gap (optimistic)"
    rate = u.unlearn.get("lr")
    rows.append([setting, u.group, u.line if rate is None else f"{rate:g}",
                 "–" if t is None else mean_std(t[2], percent=False),
                 mean_std(item[2], percent=False),
                 f"yes ({how})" if id(item) in reported else ""])
  return rows


def sd_of(values) -> float:
  """Standard deviation over seeds, ddof=1 as in the tables (0 for one seed)."""
  return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _protocol_row(setting, unit, ps, gaps) -> list[str]:
  return ([setting, unit.line] + [mean_std([p.get(k) for p in ps]) for k in PROTOCOL_KEYS]
          + [mean_std(gaps, percent=False), mean_std([p.get("RTE") for p in ps], percent=False),
             str(len(ps))])


PROTOCOL_HEADER = ["setting", "method", "UA", "RA", "TA", "MIA-efficacy", "Avg. gap",
                   "RTE (s)", "seeds"]


def separated_pairs(lines) -> tuple[int, int]:
  """How many pairs of lines the seeds tell apart: pairs whose mean average gaps differ by
  more than two standard errors of the difference, sqrt(sd_a^2 / n_a + sd_b^2 / n_b)
  (ddof=1). Returns (separated, pairs); lines with fewer than two seeds are left out."""
  stats = []
  for _, _, gaps in lines:
    g = [x for x in gaps if x is not None]
    if len(g) >= 2:
      stats.append((float(np.mean(g)), float(np.var(g, ddof=1)) / len(g)))
  pairs = [(a, b) for i, a in enumerate(stats) for b in stats[i + 1:]]
  return sum(abs(a[0] - b[0]) > 2 * math.sqrt(a[1] + b[1]) for a, b in pairs), len(pairs)


def original_protocol(exp: Experiment, results, setting: str
                      ) -> tuple[list[dict], list[float | None]] | None:
  """The original model's protocol readouts in ``setting`` (what no unlearning gives), one
  per seed (the forget set is the seed's), from the readouts of it every unit records first,
  and each seed's gap to Retrain's mean (None without Retrain); None without any unit."""
  groups = grouped(results)
  lines = protocol_lines(exp, results, setting)
  ref = next((ps for u, ps, _ in lines if u.method == "retrain" and not u.tuning), None)
  originals = [(r.seed, r.summary["original"]) for u, _, _ in lines
               for r in groups[(setting, u.line)] if r.summary.get("original")]
  if not originals:
    return None
  kind = "class" if any(o.get("remain_test_accuracy") is not None
                        for _, o in originals) else "random"
  per_seed = {seed: readouts.protocol_readouts(o, setting=kind) for seed, o in originals}
  ps = [per_seed[k] for k in sorted(per_seed)]
  ref_mean = None if ref is None else {k: mean_of(p.get(k) for p in ref) for k in PROTOCOL_KEYS}
  return ps, [None if ref_mean is None else gap_to(p, ref_mean) for p in ps]


def _original_row(exp: Experiment, results, setting: str) -> list[str] | None:
  found = original_protocol(exp, results, setting)
  if found is None:
    return None
  ps, gaps = found
  return ([setting, "original (no unlearning)"] + [mean_std([p.get(k) for p in ps])
                                                   for k in PROTOCOL_KEYS]
          + [mean_std(gaps, percent=False), "", str(len(ps))])


def protocol_table(exp: Experiment, results) -> str:
  """The unlearning protocol's table (SalUn, l1-sparse): the original, then one row per
  method."""
  rows, sweep_rows, grid_rows, separation = [], [], [], []
  for setting in settings_of(exp):
    lines = protocol_lines(exp, results, setting)
    original = _original_row(exp, results, setting)
    rows += [original] if original else []
    shown = best_of_groups(lines)
    rows += [_protocol_row(setting, *item) for item in shown]
    apart, pairs = separated_pairs(shown)
    if pairs:
      separation.append(f"{setting}: {apart} of {pairs}")
    sweep_rows += [_protocol_row(setting, *item) for item in lines
                   if item[0].group or item[0].tuning]
    grid_rows += sweep_grid(setting, lines)
  if not rows:
    return "No finished unit yet."
  text = ("The unlearning protocol's view (SalUn; Jia et al. 2023), in %, mean ± std over "
          "seeds. UA = 1 - accuracy on D_f; RA = accuracy on D_r; TA = test accuracy (class "
          "removal: the kept classes); MIA-efficacy = % of D_f an SVC on the confidence calls "
          "non-members; Avg. gap = mean |difference to Retrain| over UA, RA, TA, MIA, in "
          "points (std over seeds, each seed against Retrain's mean); RTE = seconds of the "
          "unlearning itself (edit + its training, no evaluation; the first unit of a "
          "process also compiles).\n\n" + markdown_table(PROTOCOL_HEADER, rows))
  if separation:
    text += ("\n\nPairs of method lines whose average gaps differ by more than two "
             "standard errors over seeds (the seeds tell them apart): "
             + "; ".join(separation) + ".")
  if sweep_rows:
    tuned = any(u.tuning for u in exp.units)
    how = ("each method's rate was selected on TUNING seeds (rows '(tuning)', disjoint from "
           "the reported seeds) by the smallest average gap to a tuning Retrain ('retrain "
           "(tuning)'), and the table above reports that rate's evaluation seeds against "
           "the evaluated Retrain: no reported number took part in the choice"
           if tuned else
           "the table above shows the rate with the smallest average gap on the reported "
           "seeds themselves; selecting on the gap to the same Retrain is the protocol's "
           "tuning practice, so that row is an optimistic estimate")
    text += (f"\n\nLearning-rate sweeps: {how}. The grid (Avg. gap, mean ± std over seeds):"
             "\n\n" + markdown_table(["setting", "method", "rate", "gap, tuning seeds",
                                       "gap, evaluation seeds", "reported"], grid_rows)
             + "\n\nEvery rate run, in full:\n\n"
             + markdown_table(PROTOCOL_HEADER, sweep_rows))
  return text


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
