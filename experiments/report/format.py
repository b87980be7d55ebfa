"""The report's number formatting: means and spreads over seeds, Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def mean_of(values) -> float | None:
  vals = [v for v in values if v is not None]
  return float(np.mean(vals)) if vals else None


def sd_of(values) -> float:
  """Standard deviation over seeds, ddof=1 as in the tables (0 for one seed)."""
  return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
