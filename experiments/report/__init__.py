"""Tables and figures of an experiment, rebuilt from its finished units only.

``python -m experiments.report WORKDIR`` rebuilds them. Nothing here computes
a model: it reads the experiment's ``config.json`` and every unit's
``metrics.jsonl`` / ``summary.json`` and writes ``results.csv`` (one row per
readout record), ``report.md`` (Markdown tables, mean +- std over seeds) and
``figure.png`` (forget row and remain row, one panel per setting, mean line
with a band of one standard deviation over seeds, ddof=1 like the tables).

* :mod:`experiments.report.load` -- the finished units, grouped; the CSV.
* :mod:`experiments.report.format` -- mean ± std over seeds, Markdown tables.
* :mod:`experiments.report.tables` -- every table, by name in :data:`TABLES`.
* :mod:`experiments.report.protocol` -- the unlearning protocol's view: readouts, gaps,
  sweeps, the protocol table.
* :mod:`experiments.report.figures` -- the curve figure and the protocol figure.
* :mod:`experiments.report.privacy` -- ensemble scores of units that stored confidences.
* :mod:`experiments.report.published` -- the protocol in SalUn's format beside a paper's
  published rows (an experiment's ``published``).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from experiments.report.figures import figure, protocol_figure
from experiments.report.format import markdown_table, mean_std
from experiments.report.load import UnitResult, collect, grouped, load_experiment, write_csv
from experiments.report.privacy import privacy_figure, privacy_table
from experiments.report.protocol import protocol_table
from experiments.report.published import published_table
from experiments.report.tables import LABELS, TABLES
from fmjax import checkpoints

# Every table by name: the per-seed tables, the ensembles' (experiments.report.privacy) and
# the published rows beside the measured ones (experiments.report.published).
ALL_TABLES = {**TABLES, "privacy": ("Per-example forgetting quality (ensembles)", privacy_table),
              "published": ("Beside the published table", published_table)}


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
  elif exp.figure == "privacy":
    fig_path = privacy_figure(exp, results, root / "figure.png")
  if fig_path is not None:
    parts += ["", f"![{exp.figure}]({fig_path.name})"]
  # Every report first says how its original was trained and how well it fits; every
  # report has the protocol's view (at the end, unless the experiment places it).
  names = [n for n in exp.tables if n != "original"]
  names = ["original"] + names + ([] if "protocol" in names else ["protocol"])
  for name in names:
    title, fn = ALL_TABLES[name]
    parts += ["", f"## {title}", "", fn(exp, results)]
  if pending:
    parts += ["", "## Not finished", "", ", ".join(pending)]
  checkpoints.write_text(root / "report.md", "\n".join(parts) + "\n")
  return {"report": root / "report.md", "figure": fig_path, "csv": root / "results.csv",
          "pending": pending}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m experiments.report",
                              description="Rebuild results.csv, report.md and the figure of "
                                          "an experiment from its finished units, computing "
                                          "nothing.")
  p.add_argument("workdir")
  args = p.parse_args(argv)
  try:
    paths = build(args.workdir)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(paths["report"].read_text())
  return 0


__all__ = ["ALL_TABLES", "LABELS", "TABLES", "UnitResult", "build", "collect", "figure", "grouped",
           "load_experiment", "main", "markdown_table", "mean_std", "protocol_figure",
           "protocol_table", "write_csv"]
