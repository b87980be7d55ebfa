"""Runs an experiment in a work directory; every finished unit is kept.

Layout of ``WORKDIR``::

    config.json                           the Experiment (a different one is refused)
    originals/<key>/                      training runs (resumable, fmjax.training)
    units/<setting>/<line>/seed<k>/       unlearning runs (resumable, fmjax.unlearning)
    results.csv, report.md, *.png         rebuilt by experiments.report

A unit whose ``summary.json`` exists is finished and never recomputed; an
interrupted unit resumes after its last completed epoch.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

from experiments._spec import Experiment, slug
from fmjax import checkpoints, data, sharding, training, unlearning
from fmjax.run.build import check_request

PRESENTATION = ("title", "tables", "figure", "rows", "published")


def original_dir(root: pathlib.Path, key: str) -> pathlib.Path:
  return root / "originals" / slug(key)


def unit_dir(root: pathlib.Path, setting: str, line: str, seed: int) -> pathlib.Path:
  return root / "units" / slug(setting) / slug(line) / f"seed{seed}"


def finished_summary(unit_path: pathlib.Path) -> dict | None:
  """A unit's summary.json, or None when it or the unit's ``metrics.jsonl`` is missing or
  unreadable (the unit is then not finished: rerunning the experiment resumes it from its
  checkpoint, which rewrites both)."""
  try:
    summary = json.loads((unit_path / "summary.json").read_text())
    if not checkpoints.read_metrics(unit_path):
      return None
    return summary
  except (OSError, ValueError):
    return None


def run(exp: Experiment, workdir: str | pathlib.Path, *, data_dir: str | None = None,
        progress: bool | None = None, devices: Any = None, units_per_program: int = 1) -> dict:
  """Trains the originals and runs every (unit, seed) not finished yet.

  ``devices`` (a count, or None = all) splits every batch across devices
  (:mod:`fmjax.sharding`). ``units_per_program`` K > 1 hands the runs of one
  original to :func:`fmjax.unlearning.unlearn_many` K at a time, which runs
  the fine-tunings that share an update rule as one stacked program.

  Returns:
    ``{'trained': [...], 'ran': [...], 'skipped': [...], 'seconds': {...}}``.
  """
  if not (isinstance(units_per_program, int) and units_per_program >= 1):
    raise ValueError(f"units_per_program (--units-per-program) must be an integer >= 1, got "
                     f"{units_per_program!r}.")
  # Bad settings, a bad device count and damaged data files are refused before anything
  # is written: every original's and every unit's config is built first.
  workdir = pathlib.Path(workdir)
  trains = {key: training.default_config(orig.dataset, orig.model, **dict(orig.train))
            for key, orig in exp.originals.items()}
  runs = [(unit, seed, unlearning.make_config(
      str(original_dir(workdir, unit.original)), unit.method, seed=seed,
      dataset=exp.originals[unit.original].dataset, **dict(unit.unlearn)))
      for unit, seed in exp.runs()]
  for _, _, config in runs:
    check_request(config)
  sharding.mesh_or_none(devices)
  datasets: dict[str, data.Dataset] = {}
  for orig in exp.originals.values():
    if orig.dataset not in datasets:
      datasets[orig.dataset] = data.load_dataset(orig.dataset, data_dir)
  # What the report shows (its title, tables, figure) may change between invocations; what
  # the units compute may not.
  root = checkpoints.claim_workdir(workdir, exp.to_json(), ignore=PRESENTATION)
  try:
    return _run(exp, root, trains, runs, datasets, progress, devices, units_per_program)
  finally:
    checkpoints.release_workdir(root)


def _run(exp: Experiment, root: pathlib.Path, trains: dict, runs: list, datasets: dict,
         progress: bool | None, devices: Any, units_per_program: int) -> dict:
  """The run itself, in the claimed ``root``: ``trains`` the originals' configs, ``runs``
  every (unit, seed, config), each built once by :func:`run` before anything was written."""
  checkpoints.write_json(root / "config.json", exp.to_json())
  say = (lambda msg: None) if progress is False else (
      lambda msg: print(msg, file=sys.stderr, flush=True))
  seconds: dict[str, float] = {}
  for key, orig in exp.originals.items():
    config = trains[key]
    say(f"== original {key}: {orig.model} on {orig.dataset}, {config.epochs} epochs")
    start = time.perf_counter()
    training.train(config, original_dir(root, key), dataset=datasets[orig.dataset],
                   progress=progress, devices=devices)
    seconds[f"train {key}"] = time.perf_counter() - start
  ran, skipped, pending = [], [], []
  total = len(exp.units) * len(exp.seeds)
  for unit, seed, config in runs:
    out = unit_dir(root, unit.setting, unit.line, seed)
    label = f"{unit.setting} / {unit.line} / seed {seed}"
    if finished_summary(out) is not None:
      skipped.append(label)
      continue
    pending.append((label, unit.original, config, out, unit.line))
  # Runs of one original go together, K at a time, the runs of one line (its settings and
  # seeds) next to each other: unlearn_many stacks the runs that share an update rule
  # into one program (K = 1: one run after the other).
  if units_per_program == 1:
    chunks = [[p] for p in pending]
  else:
    lines = {u.line: i for i, u in reversed(list(enumerate(exp.units)))}
    chunks = []
    for key in exp.originals:
      mine = sorted((p for p in pending if p[1] == key), key=lambda p: lines[p[4]])
      chunks += [mine[i:i + units_per_program] for i in range(0, len(mine), units_per_program)]
  done = len(skipped)
  for chunk in chunks:
    labels = [p[0] for p in chunk]
    say(f"== [{done + 1}{f'-{done + len(chunk)}' if len(chunk) > 1 else ''}/{total}] "
        + "; ".join(labels))
    done += len(chunk)
    ds = datasets[exp.originals[chunk[0][1]].dataset]
    start = time.perf_counter()
    if len(chunk) == 1:
      unlearning.unlearn(chunk[0][2], chunk[0][3], dataset=ds,
                         progress=False if progress is False else None, devices=devices)
    else:
      unlearning.unlearn_many([p[2] for p in chunk], [p[3] for p in chunk], dataset=ds,
                              progress=False if progress is False else None, devices=devices)
    for label in labels:   # a unit's share of its program's wall time
      seconds[label] = (time.perf_counter() - start) / len(chunk)
    ran += labels
  return {"ran": ran, "skipped": skipped, "seconds": seconds}
