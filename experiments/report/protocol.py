"""The unlearning protocol's view (SalUn; Jia et al. 2023): each unit's UA, RA, TA,
MIA-efficacy and RTE, the average gap to Retrain, the reported line of each learning-rate
sweep (chosen on tuning seeds), how many lines the seeds tell apart, and the table."""

from __future__ import annotations

import math

import numpy as np

from experiments._spec import Experiment
from experiments.report.format import markdown_table, mean_of, mean_std
from experiments.report.load import UnitResult, grouped, settings_of
from fmjax import readouts, unlearning

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
