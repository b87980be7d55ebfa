"""Tables and figures of an experiment, rebuilt from its finished units only.

Nothing here computes a model: it reads the experiment's ``config.json`` and every unit's
``metrics.jsonl`` / ``summary.json`` and writes ``results.csv`` (one row per
readout record), ``report.md`` (Markdown tables, mean +- std over seeds) and
``figure.png`` (forget row and remain row, one panel per setting, mean line
with a band of one standard deviation over seeds, ddof=1 like the tables).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import pathlib
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments._runner import finished_summary, unit_dir
from experiments._spec import Experiment, Unit
from fmjax import checkpoints, readouts, unlearning
from fmjax.methods import get_method

LABELS = {"forget_test_accuracy": "forget test acc", "remain_test_accuracy": "remain test acc",
          "test_accuracy": "test acc", "noise_accuracy": "noise acc"}
PHASE_ORDER = ("score", "mask", "noise", "dampen", "init", "finetune", "evaluate", "relearn")


@dataclasses.dataclass
class UnitResult:
  unit: Unit
  seed: int
  records: list[dict]
  summary: dict | None   # None: not finished


def load_experiment(root: str | pathlib.Path) -> Experiment:
  path = pathlib.Path(root) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{root} holds no experiment (no config.json); run one with "
                            "`python -m experiments.run NAME --workdir ...`.")
  raw = checkpoints.read_json(path, what="the experiment's config", fix=(
      "Rerun the experiment's command with a fresh --workdir."))
  try:
    return Experiment.from_json(raw)
  except (KeyError, TypeError) as e:
    raise ValueError(f"{path} is not an experiment's config ({type(e).__name__}: {e}); is "
                     f"{root} a training or unlearning work directory? Give the directory "
                     "an experiments.run command wrote.") from e


def collect(root: str | pathlib.Path) -> tuple[Experiment, list[UnitResult]]:
  """The experiment and every unit's records (finished or not)."""
  root = pathlib.Path(root)
  exp = load_experiment(root)
  out = []
  for seed in exp.seeds:
    for unit in exp.units:
      d = unit_dir(root, unit.setting, unit.line, seed)
      records = checkpoints.read_metrics(d)
      summary = finished_summary(d)
      out.append(UnitResult(unit, seed, records, summary))
  return exp, out


def _scalar_items(record: dict) -> dict:
  out = {}
  for k, v in record.items():
    if isinstance(v, bool) or v is None:
      out[k] = v
    elif isinstance(v, int | float | str):
      out[k] = v
    elif k == "seconds":
      out.update({f"seconds_{p}": s for p, s in v.items()})
  return out


def write_csv(results: Sequence[UnitResult], path: pathlib.Path) -> None:
  rows = []
  for r in results:
    for rec in r.records:
      rows.append({"setting": r.unit.setting, "line": r.unit.line, "method": r.unit.method,
                   "seed": r.seed, "finished": r.summary is not None, **_scalar_items(rec)})
  keys: list[str] = []
  for row in rows:
    keys += [k for k in row if k not in keys]
  buffer = io.StringIO(newline="")
  writer = csv.DictWriter(buffer, fieldnames=keys)
  writer.writeheader()
  writer.writerows(rows)
  checkpoints.write_text(path, buffer.getvalue())


def _ms(values: Sequence[float | None], *, percent: bool = True) -> str:
  vals = np.asarray([v for v in values if v is not None], np.float64)
  if vals.size == 0:
    return "–"
  scale = 100.0 if percent else 1.0
  mean = vals.mean() * scale
  if vals.size == 1:
    return f"{mean:.2f}"
  return f"{mean:.2f} ± {vals.std(ddof=1) * scale:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def _grouped(results: Sequence[UnitResult]) -> dict[tuple[str, str], list[UnitResult]]:
  groups: dict[tuple[str, str], list[UnitResult]] = defaultdict(list)
  for r in results:
    if r.summary is not None:
      groups[(r.unit.setting, r.unit.line)].append(r)
  return groups


def _settings(exp: Experiment) -> list[str]:
  return list(dict.fromkeys(u.setting for u in exp.units))


def final_table(exp: Experiment, results) -> str:
  a, b = exp.rows
  header = ["setting", "method", f"{LABELS[a]}, edit", f"{LABELS[a]}, final",
            f"{LABELS[b]}, edit", f"{LABELS[b]}, final", "MIA member rate", "relearn steps",
            "seeds"]
  rows = []
  groups = _grouped(results)
  for unit in exp.units:
    g = groups.get((unit.setting, unit.line))
    if not g:
      continue
    s = [r.summary for r in g]
    relearn = [x.get("relearn_steps") for x in s if "relearn_epochs" in x]
    relearn_text = "–" if not relearn else ", ".join(
        ">max" if v is None else str(v) for v in relearn)
    rows.append([unit.setting, unit.line, _ms([x["mask_only"].get(a) for x in s]),
                 _ms([x["final"].get(a) for x in s]), _ms([x["mask_only"].get(b) for x in s]),
                 _ms([x["final"].get(b) for x in s]),
                 _ms([x["final"].get("mia_member_rate") for x in s]), relearn_text,
                 str(len(s))])
  originals = [r.summary["original"] for r in results if r.summary is not None]
  note = ""
  if originals:
    note = (f"\n\nOriginal model: {LABELS[a]} {_ms([o.get(a) for o in originals])}, "
            f"{LABELS[b]} {_ms([o.get(b) for o in originals])}, MIA member rate "
            f"{_ms([o.get('mia_member_rate') for o in originals])}.")
  return ("Accuracies in %, mean ± std over seeds. *edit*: right after the method's edit, "
          "before fine-tuning; *final*: after the last fine-tuning epoch. MIA member rate: "
          "% of forget examples the attack calls members (compare with retrain). Relearn steps: "
          "optimiser steps on the forget set until a batch's loss is back at the original "
          "model's forget loss, per seed.\n\n"
          + _table(header, rows) + note)


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
  rows = [["original model", _ms([o.get(a) for o in originals]),
           _ms([o.get(b) for o in originals]), "100.0"]]
  for line in dict.fromkeys(u.line for u in exp.units):
    if line in by_line:
      vals = by_line[line]
      kept = np.mean([v[b] for v in vals if v.get(b) is not None]) / orig_b * 100
      rows.append([line, _ms([v.get(a) for v in vals]), _ms([v.get(b) for v in vals]),
                   f"{kept:.1f}"])
  return (f"Right after the edit, no fine-tuning; mean ± std over {len(settings)} setting(s) "
          "and their seeds, in %. *kept*: remain accuracy as % of the original model's.\n\n"
          + _table(["method", LABELS[a], LABELS[b], "kept"], rows))


def outliers_table(exp: Experiment, results) -> str:
  groups = _grouped(results)
  settings = _settings(exp)
  header = ["method"] + [f"{s}: {c}" for s in settings for c in ("best test acc",
                                                                  "best noise acc")]
  rows = []
  for line in dict.fromkeys(u.line for u in exp.units):
    row = [line]
    for s in settings:
      g = groups.get((s, line), [])
      row += [_ms([r.summary.get("best_test_accuracy") for r in g]),
              _ms([r.summary.get("best_noise_accuracy") for r in g])]
    rows.append(row)
  return ("Best accuracy within T epochs (the edit included), in %, mean ± std over seeds; "
          "noise acc: the removed points with their true labels.\n\n" + _table(header, rows))


def volatility_table(exp: Experiment, results) -> str:
  a, b = exp.rows
  header = ["setting", "method", f"{LABELS[a]}: mean abs change", f"{LABELS[a]}: adverse",
            f"{LABELS[b]}: mean abs change", f"{LABELS[b]}: adverse"]
  rows = []
  groups = _grouped(results)
  for unit in exp.units:
    g = groups.get((unit.setting, unit.line))
    if not g or g[0].summary["epochs"] == 0:
      continue
    vol = [r.summary.get("volatility", {}) for r in g]
    rows.append([unit.setting, unit.line] + [
        _ms([v.get(k, {}).get(kind) for v in vol]) for k in (a, b) for kind in ("abs",
                                                                                  "adverse")])
  return ("Volatility of each curve over epochs 0..T (Section 4.1), in accuracy points: the "
          "mean absolute change per epoch, and the mean adverse change (remain drops, forget "
          "rises). The paper's literal formula telescopes to (last - first)/(T-1); it is in "
          "summary.json as `signed`.\n\n" + _table(header, rows))


def seconds_table(exp: Experiment, results) -> str:
  groups = _grouped(results)
  phases = [p for p in PHASE_ORDER if any(p in r.summary["seconds"] for g in groups.values()
                                          for r in g)]
  rows = []
  for unit in exp.units:
    g = groups.get((unit.setting, unit.line))
    if not g:
      continue
    rows.append([unit.setting, unit.line] + [
        _ms([r.summary["seconds"].get(p) for r in g], percent=False) for p in phases])
  return ("Wall time per phase in seconds, mean ± std over seeds (evaluate: all readouts, "
          "the original model's included).\n\n" + _table(["setting", "method"] + phases, rows))


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


def _mean(values) -> float | None:
  vals = [v for v in values if v is not None]
  return float(np.mean(vals)) if vals else None


def _gap(p: dict, ref: dict) -> float | None:
  """Average gap in points: mean over UA, RA, TA, MIA of |p - ref| (SalUn's 'Avg. Gap')."""
  diffs = [abs(p[k] - ref[k]) for k in PROTOCOL_KEYS
           if p.get(k) is not None and ref.get(k) is not None]
  return 100.0 * float(np.mean(diffs)) if diffs else None


def _protocol_lines(exp: Experiment, results, setting: str):
  """Per line of ``setting``: ``(unit, [protocol per seed], gaps per seed)``; gaps are
  to Retrain's mean over seeds (None without a Retrain unit in the setting)."""
  groups = _grouped(results)
  lines = []
  for unit in exp.units:
    if unit.setting != setting or (setting, unit.line) not in groups:
      continue
    lines.append((unit, [protocol_of(r) for r in groups[(setting, unit.line)]]))
  ref = next((ps for u, ps in lines if u.method == "retrain"), None)
  ref_mean = None if ref is None else {k: _mean(p.get(k) for p in ref) for k in PROTOCOL_KEYS}
  out = []
  for unit, ps in lines:
    gaps = [None if ref_mean is None else _gap(p, ref_mean) for p in ps]
    out.append((unit, ps, gaps))
  return out


def _best_of_groups(lines):
  """Each sweep group's line with the smallest mean gap (the first on a tie, a line
  without a gap last), at the group's first position; other lines as they are."""
  def gap(item):
    g = _mean(item[2])
    return math.inf if g is None else g

  best: dict[str, tuple] = {}
  for item in lines:
    group = item[0].group
    if group is not None and (group not in best or gap(item) < gap(best[group])):
      best[group] = item
  out, shown = [], set()
  for item in lines:
    group = item[0].group
    if group is None:
      out.append(item)
    elif group not in shown:
      shown.add(group)
      out.append(best[group])
  return out


def _sd(values) -> float:
  """Standard deviation over seeds, ddof=1 as in the tables (0 for one seed)."""
  return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _protocol_row(setting, unit, ps, gaps) -> list[str]:
  return ([setting, unit.line] + [_ms([p.get(k) for p in ps]) for k in PROTOCOL_KEYS]
          + [_ms(gaps, percent=False), _ms([p.get("RTE") for p in ps], percent=False),
             str(len(ps))])


PROTOCOL_HEADER = ["setting", "method", "UA", "RA", "TA", "MIA-efficacy", "Avg. gap",
                   "RTE (s)", "seeds"]


def protocol_table(exp: Experiment, results) -> str:
  """The unlearning protocol's table (SalUn, l1-sparse): one row per method."""
  rows, sweep_rows = [], []
  for setting in _settings(exp):
    lines = _protocol_lines(exp, results, setting)
    rows += [_protocol_row(setting, *item) for item in _best_of_groups(lines)]
    sweep_rows += [_protocol_row(setting, *item) for item in lines if item[0].group]
  if not rows:
    return "No finished unit yet."
  text = ("The unlearning protocol's view (SalUn; Jia et al. 2023), in %, mean ± std over "
          "seeds. UA = 1 - accuracy on D_f; RA = accuracy on D_r; TA = test accuracy (class "
          "removal: the kept classes); MIA-efficacy = % of D_f an SVC on the confidence calls "
          "non-members; Avg. gap = mean |difference to Retrain| over UA, RA, TA, MIA, in "
          "points (std over seeds, each seed against Retrain's mean); RTE = seconds of the "
          "unlearning itself (edit + its training, no evaluation; the first unit of a "
          "process also compiles).\n\n" + _table(PROTOCOL_HEADER, rows))
  if sweep_rows:
    text += ("\n\nLearning-rate sweeps: every rate run (the table above shows the rate with "
             "the smallest average gap; selecting on the gap to Retrain is the protocol's "
             "tuning practice, so that row is an optimistic estimate).\n\n"
             + _table(PROTOCOL_HEADER, sweep_rows))
  return text


TABLES = {"final": ("Final readouts", final_table), "mask_only": ("Mask only", mask_only_table),
          "outliers": ("Outlier deletion", outliers_table),
          "volatility": ("Volatility", volatility_table),
          "seconds": ("Wall time", seconds_table),
          "protocol": ("The unlearning protocol", protocol_table)}


def _curve(records: list[dict], key: str) -> tuple[list[int], list[float]]:
  pts = [(r["epoch"], r[key]) for r in records
         if r["phase"] in ("edit", "finetune") and r.get(key) is not None]
  return [p[0] for p in pts], [p[1] for p in pts]


HIGHLIGHT = "fisher_mask"   # the paper's method: drawn strongest and on top
DPI = 200


def _band(ys: np.ndarray) -> np.ndarray:
  """One standard deviation over seeds, ddof=1 as in the tables (0 for one seed)."""
  return ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(ys.shape[1])


def _title(text: str, width: int) -> str:
  """The title on as few lines as fit, broken at ': ' or ', ' rather than mid-phrase."""
  if len(text) <= width:
    return text
  head, sep, tail = text.partition(": ")
  if sep and len(head) <= width:
    return head + ":\n" + _title(tail, width)
  return textwrap.fill(text, width, break_long_words=False)


def figure(exp: Experiment, results, path: pathlib.Path) -> pathlib.Path | None:
  """The paper's curve figure: a forget row and a remain row, one panel per setting.

  FisherMask (the paper's method) is a thick blue line with markers drawn on
  top; Retrain is red dashes with its final level dotted; FisherNoise (no
  fine-tuning) a black dashed level; a method without fine-tuning a star at
  epoch 0. Bands are one standard deviation over seeds (ddof=1, as in the
  tables). The second row's y-range covers the methods' curves; a Retrain
  start far below it (a model trained from scratch starts at chance) is
  marked by an arrow with its value instead of squeezing the methods.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  groups = _grouped(results)
  settings = [s for s in _settings(exp) if any(k[0] == s for k in groups)]
  if not settings:
    return None
  width = 4.2 * len(settings) + 2.4
  fig, axes = plt.subplots(2, len(settings), figsize=(width, 6.6), squeeze=False,
                           sharex="col")
  # Red is Retrain's and blue FisherMask's; the other lines take muted colours.
  colors = [f"tab:{c}" for c in ("orange", "green", "purple", "brown", "pink", "gray",
                                  "olive", "cyan")]
  lines = list(dict.fromkeys(u.line for u in exp.units))
  others = [ln for ln in lines if not any(u.line == ln and u.method in (HIGHLIGHT, "retrain")
                                          for u in exp.units)]
  for col, setting in enumerate(settings):
    for row, key in enumerate(exp.rows):
      ax = axes[row, col]
      shown: list[float] = []     # values the y-range must show
      retrain_start = None
      for line in lines:
        g = groups.get((setting, line))
        if not g:
          continue
        curves = [_curve(r.records, key) for r in g]
        n = min(len(c[0]) for c in curves)
        if n == 0:
          continue
        x = np.asarray(curves[0][0][:n])
        ys = np.asarray([c[1][:n] for c in curves]) * 100
        mean, band = ys.mean(0), _band(ys)
        method = g[0].unit.method
        if method == "fisher_noise":
          ax.axhline(mean[-1], color="black", ls="--", lw=1, label=line, zorder=2)
          shown.append(mean[-1])
          continue
        if method == HIGHLIGHT:
          style = {"color": "tab:blue", "lw": 2.6, "marker": "o", "ms": 4.5, "zorder": 6}
        elif method == "retrain":
          style = {"color": "tab:red", "ls": "--", "lw": 1.6, "zorder": 5}
        else:
          style = {"color": colors[others.index(line) % len(colors)] if line in others
                   else "tab:gray", "lw": 1.2, "alpha": 0.9, "zorder": 3}
        if n == 1:
          ax.plot(x, mean, marker="*", ms=11, ls="none", label=line, color=style["color"],
                  zorder=style["zorder"])
          shown.append(mean[0])
          continue
        ax.plot(x, mean, label=line, **style)
        ax.fill_between(x, mean - band, mean + band, alpha=0.18, color=style["color"], lw=0,
                        zorder=style["zorder"] - 1)
        if method == "retrain":
          ax.axhline(mean[-1], color="tab:red", ls=":", lw=1, zorder=2)
          retrain_start = (x[0], mean[0])
          shown.extend((mean + band)[1:])
          shown.extend((mean - band)[1:])
        else:
          shown.extend(mean + band)
          shown.extend(mean - band)
      if row == 1 and shown:
        lo, hi = min(shown), max(shown)
        pad = max(1.0, 0.12 * (hi - lo))
        lo, hi = max(lo - pad, -1.0), min(hi + pad, 101.0)
        ax.set_ylim(lo, hi)
        if retrain_start is not None and retrain_start[1] < lo:
          ax.annotate(f"retrain starts at {retrain_start[1]:.1f}%", xy=(retrain_start[0], lo),
                      xytext=(retrain_start[0] + 1.15, lo + 0.06 * (hi - lo)), fontsize=7.5,
                      color="tab:red", ha="left", va="center",
                      arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 0.8})
      else:
        ax.set_ylim(-3, 103)
      if col == 0:
        ax.set_ylabel(f"{LABELS[key]} (%)")
      if row == 0:
        ax.set_title(setting, fontsize=10)
      else:
        ax.set_xlabel("fine-tuning epoch (0 = right after the edit)")
      ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
      ax.grid(alpha=0.3)
  seen: dict[str, Any] = {}
  for ax in axes.flat:
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
      seen.setdefault(label, handle)
  legend = fig.legend(list(seen.values()), list(seen.keys()), loc="center right", fontsize=8.5,
                      frameon=False)
  for text in legend.get_texts():
    if any(u.line == text.get_text() and u.method == HIGHLIGHT for u in exp.units):
      text.set_fontweight("bold")
  fig.suptitle(_title(exp.title, int(width * 9)), fontsize=10.5)
  fig.tight_layout(rect=(0, 0, 1 - 1.9 / width, 0.95))
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  fig.savefig(tmp, dpi=DPI)
  tmp.replace(path)   # a kill leaves the old figure or the new one
  plt.close(fig)
  return path


def protocol_figure(exp: Experiment, results, path: pathlib.Path) -> pathlib.Path | None:
  """The average gap to Retrain per method, one panel per setting (shorter is closer).

  Bars: mean over seeds with one standard deviation; the paper's methods in
  blue (FisherMask dark and bold), its successors in orange; a sweep group
  shows its best rate. The RTE in seconds is written at the end of each bar.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.patches
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  panels = []
  for setting in _settings(exp):
    items = [x for x in _best_of_groups(_protocol_lines(exp, results, setting))
             if x[0].method != "retrain" and _mean(x[2]) is not None]
    if items:
      panels.append((setting, sorted(items, key=lambda x: -_mean(x[2]))))
  if not panels:
    return None
  height = 0.32 * max(len(items) for _, items in panels) + 1.6
  fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 0.6, height),
                           squeeze=False)
  top = max(_mean(x[2]) + _sd(x[2]) for _, items in panels for x in items)
  for ax, (setting, items) in zip(axes[0], panels, strict=True):
    y = np.arange(len(items))
    means = [_mean(x[2]) for x in items]
    errs = [_sd(x[2]) for x in items]
    colors = ["tab:blue" if x[0].method == HIGHLIGHT else
              ("#8fb3d9" if get_method(x[0].method).family == "paper" else "tab:orange")
              for x in items]
    # Log scale: gaps of a tenth of a point and of tens of points side by side.
    low = [min(e, m - 0.5 * m) for m, e in zip(means, errs, strict=True)]
    ax.barh(y, means, xerr=[low, errs], color=colors, left=0.0,
            error_kw={"lw": 0.8, "capsize": 2})
    ax.set_yticks(y, [x[0].line for x in items], fontsize=8.5)
    for label, item in zip(ax.get_yticklabels(), items, strict=True):
      if item[0].method == HIGHLIGHT:
        label.set_fontweight("bold")
    for yi, m, e, item in zip(y, means, errs, items, strict=True):
      rte = _mean(p.get("RTE") for p in item[1])
      ax.text((m + e) * 1.08, yi, f"{rte:.1f}s" if rte < 10 else f"{rte:.0f}s",
              va="center", fontsize=7, color="dimgray")
    ax.set_xscale("log")
    ax.set_xlim(min(0.5 * min(means), 0.5), top * 3)
    ax.set_title(setting, fontsize=10)
    ax.set_xlabel("average gap to Retrain, UA/RA/TA/MIA (points, log)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(axis="x", which="both", alpha=0.25)
  handles = [matplotlib.patches.Patch(color=c, label=t) for c, t in
             (("tab:blue", "FisherMask (the paper)"), ("#8fb3d9", "the paper's baselines"),
              ("tab:orange", "successors"))]
  fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8.5, frameon=False)
  fig.suptitle(_title(exp.title + " (shorter is closer to Retrain; RTE at the bar's end)",
                      int((5.4 * len(panels) + 0.6) * 9)), fontsize=10.5)
  fig.tight_layout(rect=(0, 0.06, 1, 0.95))
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  fig.savefig(tmp, dpi=DPI)
  tmp.replace(path)
  plt.close(fig)
  return path


def build(root: str | pathlib.Path) -> dict[str, Any]:
  """Writes results.csv, report.md and figure.png from the finished units."""
  root = pathlib.Path(root)
  exp, results = collect(root)
  write_csv(results, root / "results.csv")
  pending = [f"{r.unit.setting} / {r.unit.line} / seed {r.seed}" for r in results
             if r.summary is None]
  parts = [f"# {exp.title}", "",
           f"Experiment `{exp.name}`; {len(results) - len(pending)} of {len(results)} "
           f"units finished (seeds {', '.join(map(str, exp.seeds))}). Rebuild with "
           f"`python -m experiments.report {root}`."]
  fig_path = None
  if exp.figure == "curves":
    fig_path = figure(exp, results, root / "figure.png")
  elif exp.figure == "protocol":
    fig_path = protocol_figure(exp, results, root / "figure.png")
  if fig_path is not None:
    parts += ["", f"![{exp.figure}]({fig_path.name})"]
  names = list(exp.tables) + ([] if "protocol" in exp.tables else ["protocol"])
  for name in names:
    title, fn = TABLES[name]
    parts += ["", f"## {title}", "", fn(exp, results)]
  if pending:
    parts += ["", "## Not finished", "", ", ".join(pending)]
  checkpoints.write_text(root / "report.md", "\n".join(parts) + "\n")
  return {"report": root / "report.md", "figure": fig_path, "csv": root / "results.csv",
          "pending": pending}
