"""The report's figures: the paper's forget/remain curves and the protocol's gap bars."""

from __future__ import annotations

import pathlib
import textwrap
from typing import Any

import numpy as np

from experiments._spec import Experiment
from experiments.report.format import mean_of, sd_of
from experiments.report.load import grouped, settings_of
from experiments.report.protocol import best_of_groups, original_protocol, protocol_lines
from experiments.report.tables import LABELS
from fmjax.methods import get_method


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


def save_figure(fig, path: pathlib.Path) -> pathlib.Path:
  """Writes ``fig`` atomically (a kill leaves the old figure or the new one) and closes it."""
  import matplotlib.pyplot as plt
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  fig.savefig(tmp, dpi=DPI)
  tmp.replace(path)
  plt.close(fig)
  return path


# Red is Retrain's and blue FisherMask's; the other lines take muted colours.
COLORS = [f"tab:{c}" for c in ("orange", "green", "purple", "brown", "pink", "gray", "olive",
                                "cyan")]


def _style(method: str, line: str, others: list[str]) -> dict:
  if method == HIGHLIGHT:
    return {"color": "tab:blue", "lw": 2.6, "marker": "o", "ms": 4.5, "zorder": 6}
  if method == "retrain":
    return {"color": "tab:red", "ls": "--", "lw": 1.6, "zorder": 5}
  return {"color": COLORS[others.index(line) % len(COLORS)] if line in others else "tab:gray",
          "lw": 1.2, "alpha": 0.9, "zorder": 3}


def _draw_lines(ax, groups, setting: str, key: str, lines: list[str], others: list[str]):
  """Every line's curve of ``key`` in one panel. Returns the values the y-range must show
  and Retrain's starting point (or None)."""
  shown: list[float] = []
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
    style = _style(method, line, others)
    if n == 1:
      ax.plot(x, mean, marker="*", ms=11, ls="none", label=line, color=style["color"],
              zorder=style["zorder"])
      shown.append(mean[0])
      continue
    ax.plot(x, mean, label=line, **style)
    ax.fill_between(x, mean - band, mean + band, alpha=0.18, color=style["color"], lw=0,
                    zorder=style["zorder"] - 1)
    first = 0
    if method == "retrain":
      ax.axhline(mean[-1], color="tab:red", ls=":", lw=1, zorder=2)
      retrain_start, first = (x[0], mean[0]), 1
    shown.extend((mean + band)[first:])
    shown.extend((mean - band)[first:])
  return shown, retrain_start


def _remain_range(ax, shown: list[float], retrain_start) -> None:
  """The second row's y-range covers the methods; a Retrain start below it is an arrow."""
  lo, hi = min(shown), max(shown)
  pad = max(1.0, 0.12 * (hi - lo))
  lo, hi = max(lo - pad, -1.0), min(hi + pad, 101.0)
  ax.set_ylim(lo, hi)
  if retrain_start is not None and retrain_start[1] < lo:
    ax.annotate(f"retrain starts at {retrain_start[1]:.1f}%", xy=(retrain_start[0], lo),
                xytext=(retrain_start[0] + 1.15, lo + 0.06 * (hi - lo)), fontsize=7.5,
                color="tab:red", ha="left", va="center",
                arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 0.8})


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

  groups = grouped(results)
  settings = [s for s in settings_of(exp) if any(k[0] == s for k in groups)]
  if not settings:
    return None
  width = 4.2 * len(settings) + 2.4
  fig, axes = plt.subplots(2, len(settings), figsize=(width, 6.6), squeeze=False,
                           sharex="col")
  lines = list(dict.fromkeys(u.line for u in exp.units if not u.tuning))
  others = [ln for ln in lines if not any(u.line == ln and u.method in (HIGHLIGHT, "retrain")
                                          for u in exp.units)]
  for col, setting in enumerate(settings):
    for row, key in enumerate(exp.rows):
      ax = axes[row, col]
      shown, retrain_start = _draw_lines(ax, groups, setting, key, lines, others)
      if row == 1 and shown:
        _remain_range(ax, shown, retrain_start)
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
  return save_figure(fig, path)


def protocol_figure(exp: Experiment, results, path: pathlib.Path) -> pathlib.Path | None:
  """The average gap to Retrain per method, one panel per setting (shorter is closer).

  Bars: mean over seeds with one standard deviation; the paper's methods in
  blue (FisherMask dark and bold), its successors in orange; a sweep group
  shows its best rate. The RTE in seconds is written at the end of each bar; a dashed
  line marks the original model's own gap (doing nothing).
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.lines
  import matplotlib.patches
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  panels = []
  for setting in settings_of(exp):
    items = [x for x in best_of_groups(protocol_lines(exp, results, setting))
             if x[0].method != "retrain" and mean_of(x[2]) is not None]
    if items:
      found = original_protocol(exp, results, setting)
      panels.append((setting, sorted(items, key=lambda x: -mean_of(x[2])),
                     None if found is None else mean_of(found[1])))
  if not panels:
    return None
  height = 0.32 * max(len(items) for _, items, _ in panels) + 1.6
  fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels) + 0.6, height),
                           squeeze=False)
  top = max([mean_of(x[2]) + sd_of(x[2]) for _, items, _ in panels for x in items]
            + [g for _, _, g in panels if g is not None])
  for ax, (setting, items, original) in zip(axes[0], panels, strict=True):
    y = np.arange(len(items))
    means = [mean_of(x[2]) for x in items]
    errs = [sd_of(x[2]) for x in items]
    colors = ["tab:blue" if x[0].method == HIGHLIGHT else
              ("#8fb3d9" if "paper" in get_method(x[0].method).tags else "tab:orange")
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
      rte = mean_of(p.get("RTE") for p in item[1])
      ax.text((m + e) * 1.08, yi, f"{rte:.1f}s" if rte < 10 else f"{rte:.0f}s",
              va="center", fontsize=7, color="dimgray", zorder=3,   # over the dashed line
              bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.9})
    if original is not None:
      ax.axvline(original, color="black", ls="--", lw=1)
      ax.text(original, len(items) - 0.4, f" original: {original:.1f}", fontsize=7.5,
              va="bottom", ha="center")
    ax.set_xscale("log")
    ax.set_xlim(min(0.5 * min(means), 0.5), top * 3)
    ax.set_title(setting, fontsize=10)
    ax.set_xlabel("average gap to Retrain, UA/RA/TA/MIA (points, log)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(axis="x", which="both", alpha=0.25)
  handles = [matplotlib.patches.Patch(color=c, label=t) for c, t in
             (("tab:blue", "FisherMask (the paper)"), ("#8fb3d9", "the paper's baselines"),
              ("tab:orange", "successors"))]
  handles.append(matplotlib.lines.Line2D([], [], color="black", ls="--", lw=1,
                                         label="the original, no unlearning"))
  fig.legend(handles=handles, loc="lower center", ncol=4 if len(panels) > 1 else 2,
             fontsize=8.5, frameon=False)
  fig.suptitle(_title(exp.title + " (shorter is closer to Retrain; RTE at the bar's end)",
                      int((5.4 * len(panels) + 0.6) * 9)), fontsize=10.5)
  fig.tight_layout(rect=(0, 0.06, 1, 0.95))
  return save_figure(fig, path)
