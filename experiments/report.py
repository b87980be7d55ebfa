"""``python -m experiments.report WORKDIR``: rebuild results.csv, report.md and
the figure of an experiment from its finished units, computing nothing."""

from __future__ import annotations

import argparse
import sys

from experiments import _report


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__)
  p.add_argument("workdir")
  args = p.parse_args(argv)
  try:
    paths = _report.build(args.workdir)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(paths["report"].read_text())
  return 0


if __name__ == "__main__":
  sys.exit(main())
