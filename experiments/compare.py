"""``python -m experiments.compare A B``: two experiment runs side by side.

For every (setting, method) finished in both, the final and edit-only values of
the experiment's two curve readouts and the MIA member rate, with B - A, as a
Markdown table (e.g. CPU vs GPU, or JAX vs another implementation's numbers).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from experiments import report


def compare(a: str, b: str) -> str:
  exp_a, res_a = report.collect(a)
  exp_b, res_b = report.collect(b)
  if exp_a.rows != exp_b.rows:
    raise ValueError(f"the runs record different readouts ({exp_a.rows} vs {exp_b.rows}); "
                     "compare runs of the same experiment family.")
  ga, gb = report.grouped(res_a), report.grouped(res_b)
  keys = [k for k in ga if k in gb]
  if not keys:
    raise ValueError(f"{a} and {b} have no finished (setting, method) in common.")
  metrics = [(phase, k) for k in (*exp_a.rows, "mia_member_rate")
             for phase in ("mask_only", "final")]
  header = ["setting", "method"]
  for phase, k in metrics:
    name = report.LABELS.get(k, "MIA member rate")
    header += [f"{name} {'edit' if phase == 'mask_only' else 'final'}: A", "B", "B - A"]
  rows = []
  for key in keys:
    row = list(key)
    for phase, k in metrics:
      va = [r.summary[phase].get(k) for r in ga[key]]
      vb = [r.summary[phase].get(k) for r in gb[key]]
      ma = np.mean([v for v in va if v is not None]) if any(v is not None for v in va) else None
      mb = np.mean([v for v in vb if v is not None]) if any(v is not None for v in vb) else None
      delta = "–" if ma is None or mb is None else f"{(mb - ma) * 100:+.2f}"
      row += [report.mean_std(va), report.mean_std(vb), delta]
    rows.append(row)
  return (f"A = `{a}` ({exp_a.title}); B = `{b}` ({exp_b.title}). In %, mean ± std over "
          "seeds.\n\n" + report.markdown_table(header, rows))


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__)
  p.add_argument("a")
  p.add_argument("b")
  args = p.parse_args(argv)
  try:
    print(compare(args.a, args.b))
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
