"""The protocol table in SalUn's format, each measured line beside its published row.

SalUn's format (Fan et al. 2024, Table 1): every number is ``mean ± std (gap)``, the gap
being ``|mean - Retrain's mean|`` in points, and Avg. Gap the mean of a row's four gaps
(so it is the gap of the means, where :func:`experiments.report.protocol.protocol_table`
averages each seed's gap). A measured row's gaps are to the measured Retrain, a published
row's to the published Retrain. RTE is in minutes, as the paper prints it (the machines
differ, so it is shown, never compared).

A measured cell is flagged (⚑) when it lies outside ``max(2 SE, 1 point)`` of the
published mean, with ``SE = sqrt(s_pub^2 / n_pub + s^2 / n)`` the standard error of the
difference of the two means (published: its deviation over its trials; measured: over
this run's seeds, ddof=1, 0 for one seed). The one-point floor keeps deviations of 0.00
(RA at 100%) from flagging rounding.
"""

from __future__ import annotations

import math

import numpy as np

from experiments._spec import PROTOCOL_METRICS, Experiment, Published
from experiments.report.format import markdown_table, sd_of
from experiments.report.load import settings_of
from experiments.report.protocol import best_of_groups, protocol_lines

HEADER = ["setting", "method", "source", "UA", "RA", "TA", "MIA-efficacy", "Avg. gap",
          "RTE (min)", "runs"]


def outside(published: tuple[float, float], trials: int, measured: list[float]) -> bool:
  """Whether the mean of ``measured`` (%, one per seed) lies outside ``max(2 SE, 1)`` points
  of the ``published`` (mean, std) over ``trials`` runs (see the module docstring)."""
  (p_mean, p_sd), n = published, len(measured)
  se = math.sqrt(p_sd ** 2 / trials + sd_of(measured) ** 2 / n)
  return abs(float(np.mean(measured)) - p_mean) > max(2 * se, 1.0)


def _cell(mean: float, sd: float | None, gap: float | None, flag: bool = False) -> str:
  text = f"{mean:.2f}" if sd is None else f"{mean:.2f} ± {sd:.2f}"
  text += "" if gap is None else f" ({gap:.2f})"
  return f"**{text}** ⚑" if flag else text


def _stats(ps: list[dict]) -> dict[str, list[float]]:
  """Per metric, the seeds' values in %."""
  return {k: [100.0 * p[k] for p in ps if p.get(k) is not None] for k in PROTOCOL_METRICS}


def _gaps(means: dict[str, float], ref: dict[str, float] | None) -> dict[str, float | None]:
  return {k: None if ref is None or k not in ref or k not in means else abs(means[k] - ref[k])
          for k in PROTOCOL_METRICS}


def _avg(gaps: dict[str, float | None]) -> str:
  vals = [g for g in gaps.values() if g is not None]
  return f"{np.mean(vals):.2f}" if len(vals) == len(PROTOCOL_METRICS) else "–"


def _published_row(pub: Published, ref: Published | None) -> list[str]:
  means = {k: v[0] for k, v in pub.values.items()}
  gaps = _gaps(means, None if ref is None else {k: v[0] for k, v in ref.values.items()})
  return ([pub.setting, pub.row, f"published ({pub.trials} trials)"]
          + [_cell(*pub.values[k], gaps[k]) for k in PROTOCOL_METRICS]
          + [_avg(gaps), "–" if pub.rte is None else f"{pub.rte:.2f}", str(pub.trials)])


def published_table(exp: Experiment, results) -> str:
  """Every reported line of each setting in SalUn's format, its published row (if the
  experiment names one) right below it, measured cells outside the tolerance flagged."""
  rows, flagged, compared = [], [], 0
  for setting in settings_of(exp):
    shown = best_of_groups(protocol_lines(exp, results, setting))
    if not shown:
      continue
    stats = {id(item): _stats(item[1]) for item in shown}
    means = {i: {k: float(np.mean(v)) for k, v in s.items() if v} for i, s in stats.items()}
    ref = next((means[id(x)] for x in shown if x[0].method == "retrain"), None)
    pubs = {p.line: p for p in exp.published if p.setting == setting}
    pub_ref = next((p for p in pubs.values() if p.line == "retrain"), None)
    for item in shown:
      unit, ps = item[0], item[1]
      s, m = stats[id(item)], means[id(item)]
      pub = pubs.get(unit.line) or pubs.get(unit.group)
      gaps = _gaps(m, ref)
      cells = []
      for k in PROTOCOL_METRICS:
        if not s[k]:
          cells.append("–")
          continue
        flag = pub is not None and outside(pub.values[k], pub.trials, s[k])
        compared += pub is not None
        if flag:
          flagged.append(f"{setting} / {unit.line} / {k}: {m[k]:.2f} against "
                         f"{pub.values[k][0]:.2f}")
        cells.append(_cell(m[k], sd_of(s[k]), gaps[k], flag))
      rte = [p["RTE"] / 60 for p in ps if p.get("RTE") is not None]
      rows.append([setting, unit.line, "measured"] + cells
                  + [_avg(gaps), f"{np.mean(rte):.2f}" if rte else "–", str(len(ps))])
      if pub is not None:
        rows.append(_published_row(pub, pub_ref))
  if not rows:
    return "No finished unit yet."
  sources = sorted({p.source for p in exp.published})
  text = ("The protocol in SalUn's format, in %: mean ± std over runs (gap to Retrain's mean "
          "in parentheses; Avg. gap = the mean of the four). A *published* row is the "
          "measured line's counterpart in the source below, its gaps to the published "
          "Retrain; a measured cell is flagged ⚑ when it lies outside max(2 SE, 1 point) of "
          "the published mean (SE: the standard error of the difference of the two means). "
          "RTE in minutes, not compared (other hardware).\n\n" + markdown_table(HEADER, rows))
  if sources:
    text += "\n\nPublished rows: " + "; ".join(sources) + "."
    text += (f"\n\n{len(flagged)} of {compared} compared cells lie outside the tolerance"
             + (": " + "; ".join(flagged) + "." if flagged else "."))
  else:
    text += "\n\nThis experiment names no published rows."
  return text
