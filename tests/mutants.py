"""Mutation testing of the method, procedure, readout and Fisher code: ``make mutants``.

Tool: cosmic-ray. It writes each mutant into the source file on disk and runs the test
command in a fresh subprocess, so nothing mutated is traced, compiled and cached by JAX
in the process that judges it, and a mutant that hangs is stopped by its timeout. Its
session database (SQLite) records every result as it comes: a killed ``make mutants``
rerun continues where it stopped. The mutants are written into a private copy of the
repository (``<workdir>/tree``), never into the working tree, so tests, commits and
other runs beside it see the real code.

Every scope runs its own test selection (the tests that should catch a bug there), with
``-x`` so a killed mutant costs its first failing test. The mutants are a seeded sample
(``--sample N`` per scope), without the operators that make the same bug again (a ``+``
turned into each of ``<<``, ``>>``, ``|``, ``&``, ``^``, ``%``, ``//`` and ``**``): the
whole set is ~4,000 mutants, days on 2 cores. Prints every scope's kill rate, the total
with a 95% Wilson interval and each survivor (file:line, operator, diff), and writes them
to ``<workdir>/report.md``. Not part of CI.

    python -m tests.mutants --workdir runs/mutants --sample 12
"""

from __future__ import annotations

import argparse
import math
import pathlib
import random
import shutil
import subprocess
import sys
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYTEST = (f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p no:randomly "
          "-m 'not slow and not scale and not long and not prepare'")

# scope name -> (the modules mutated, the tests that should catch a bug in them)
SCOPES = {
    "fisher": (["fmjax/fisher"], ["tests/test_fisher.py"]),
    "successors": ([f"fmjax/methods/{m}.py" for m in ("salun", "scrub", "ssd", "neggrad_plus",
                                                      "l1_sparse", "random_label")],
                   ["tests/test_successors.py"]),
    "paper methods": ([f"fmjax/methods/{m}.py" for m in (
        "fisher_mask", "random_mask", "finetune", "retrain", "fisher_noise", "grad_mask",
        "influence", "activation_mask", "tfidf", "_channels", "_gradients", "base")],
        ["tests/test_method_scores.py", "tests/test_masks.py", "tests/test_extension.py",
         "tests/test_successor_runs.py::test_paper_methods_are_bit_identical_to_before_the_"
         "interface_changed"]),
    "procedures": (["fmjax/procedures.py"], ["tests/test_successors.py",
                                             "tests/test_runner.py"]),
    "readouts": (["fmjax/readouts.py"], ["tests/test_successors.py",
                                         "tests/test_method_scores.py"]),
}
# The binary-operator replacements kept: the arithmetic ones (+ - * /) among themselves.
KEPT_BINARY = ("Add", "Sub", "Mul", "Div")


def _redundant(operator: str) -> bool:
  name = operator.split("/")[-1]
  if not name.startswith("ReplaceBinaryOperator_"):
    return False
  _, a, b = name.split("_")
  return not (a in KEPT_BINARY and b in KEPT_BINARY)


COPIED = ("fmjax", "tests", "experiments", "pyproject.toml")


def copy_tree(workdir: pathlib.Path) -> pathlib.Path:
  """The private copy the mutants are written into (made once; a rerun keeps it)."""
  tree = workdir / "tree"
  if not tree.exists():
    partial = workdir / "tree.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in COPIED:
      src = ROOT / name
      if src.is_dir():
        shutil.copytree(src, partial / name, ignore=shutil.ignore_patterns("__pycache__"))
      else:
        shutil.copy2(src, partial / name)
    partial.rename(tree)
  return tree


def _config(modules: list[str], tests: list[str], timeout: float,
            root: pathlib.Path = ROOT) -> str:
  paths = ", ".join(f'"{root / m}"' for m in modules)
  command = f"{PYTEST} {' '.join(str(root / t) for t in tests)}"
  return (f"[cosmic-ray]\nmodule-path = [{paths}]\ntimeout = {timeout}\n"
          f"excluded-modules = []\ntest-command = \"{command}\"\n\n"
          "[cosmic-ray.distributor]\nname = \"local\"\n")


def _cosmic_ray(tree: pathlib.Path, *args: str) -> None:
  """cosmic-ray in the copy: its pytest imports the copy's fmjax (rootdir on sys.path)."""
  subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *args], check=True, cwd=tree)


def prepare(name: str, workdir: pathlib.Path, sample: int, seed: int, timeout: float
            ) -> pathlib.Path:
  """The scope's session: every mutant, all but a seeded sample of ``sample`` marked
  skipped (kept when the session exists, so a rerun resumes it)."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkerOutcome, WorkResult

  modules, tests = SCOPES[name]
  stem = workdir / name.replace(" ", "_")
  config, session = stem.with_suffix(".toml"), stem.with_suffix(".sqlite")
  if session.exists():
    return session
  tree = copy_tree(workdir)
  config.write_text(_config(modules, tests, timeout, tree))
  _cosmic_ray(tree, "init", str(config.resolve()), str(session.resolve()))
  with use_db(str(session), WorkDB.Mode.open) as db:
    items = list(db.work_items)
    kept = [i for i in items if not _redundant(i.mutations[0].operator_name)]
    chosen = {i.job_id for i in random.Random(seed).sample(kept, min(sample, len(kept)))}
    skip = [i.job_id for i in items if i.job_id not in chosen]
    db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
  return session


def results(session: pathlib.Path, root: pathlib.Path) -> list[tuple[str, str, str]]:
  """(outcome, 'file:line operator', diff) of every tested mutant."""
  from cosmic_ray.work_db import WorkDB, use_db
  from cosmic_ray.work_item import WorkerOutcome

  out = []
  with use_db(str(session), WorkDB.Mode.open) as db:
    items = {i.job_id: i for i in db.work_items}
    for job_id, r in db.results:
      if r.worker_outcome == WorkerOutcome.SKIPPED:
        continue
      m = items[job_id].mutations[0]
      where = (f"{pathlib.Path(m.module_path).relative_to(root)}:{m.start_pos[0]} "
               f"{m.operator_name.split('/')[-1]}")
      outcome = "killed" if r.is_killed else "survived"
      if r.test_outcome is None or r.worker_outcome != WorkerOutcome.NORMAL:
        outcome = "incompetent"   # could not run: counted apart
      elif r.test_outcome.value == "incompetent":
        outcome = "incompetent"
      out.append((outcome, where, r.diff or ""))
  return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The 95% Wilson score interval of a proportion k / n."""
  if n == 0:
    return (0.0, 1.0)
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return (centre - half, centre + half)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split(
      "\n\n")[0])
  p.add_argument("--workdir", default="runs/mutants")
  p.add_argument("--sample", type=int, default=12, help="mutants per scope (default 12)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
  p.add_argument("--scopes", default=",".join(SCOPES), help="comma-separated scope names")
  args = p.parse_args(argv)
  scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
  unknown = sorted(set(scopes) - set(SCOPES))
  if unknown or args.sample < 1:
    print(f"error: scopes must be among {sorted(SCOPES)} (got {unknown}) and --sample >= 1.",
          file=sys.stderr)
    return 2
  workdir = pathlib.Path(args.workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  lines, totals = ["# Mutation testing (cosmic-ray)", ""], defaultdict(int)
  survivors = []
  for name in scopes:
    session = prepare(name, workdir, args.sample, args.seed, args.timeout)
    print(f"== {name}: {args.sample} mutants of {', '.join(SCOPES[name][0])}", flush=True)
    tree = copy_tree(workdir)
    _cosmic_ray(tree, "exec", str(session.with_suffix(".toml").resolve()), str(session.resolve()))
    got = results(session, tree.resolve())
    counts = defaultdict(int)
    for outcome, where, diff in got:
      counts[outcome] += 1
      totals[outcome] += 1
      if outcome == "survived":
        survivors.append((name, where, diff))
    tested = counts["killed"] + counts["survived"]
    rate = counts["killed"] / tested if tested else float("nan")
    lines.append(f"- {name}: {counts['killed']} of {tested} killed ({rate:.0%}); "
                 f"{counts['incompetent']} could not run")
  killed, tested = totals["killed"], totals["killed"] + totals["survived"]
  lo, hi = wilson(killed, tested)
  lines += ["", f"Total: {killed} of {tested} killed ({killed / max(tested, 1):.0%}, 95% "
                f"interval {lo:.0%}-{hi:.0%}).", "", "## Survivors", ""]
  for name, where, diff in survivors:
    lines += [f"### {name}: {where}", "", "```diff", diff.strip(), "```", ""]
  text = "\n".join(lines) + "\n"
  (workdir / "report.md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
