"""The two drivers: :func:`unlearn` (one run) and :func:`unlearn_many` (several, stacked)."""

from __future__ import annotations

import pathlib
from typing import Any

from fmjax import checkpoints, data, sharding
from fmjax.run.build import setup
from fmjax.run.config import UnlearnConfig
from fmjax.run.phases import (
  Unit,
  UnlearnResult,
  finetune_phase,
  finish,
  stacked_finetune_phase,
  start,
)
from fmjax.runner import stack_key


def unlearn(config: UnlearnConfig, workdir: str, *, data_dir: str | None = None,
            progress: bool | None = None, dataset: data.Dataset | None = None,
            stop_after_epoch: int | None = None, allow_partial: bool = False,
            devices: Any = None) -> UnlearnResult:
  """Runs (or resumes) one unlearning run in ``workdir``. See the module docstring.

  A training run that has not finished its epochs is refused unless
  ``allow_partial`` (then its newest checkpoint is used). ``devices`` (a
  count, a mesh, or None = all; :mod:`fmjax.sharding`) splits every phase's
  batches across devices; it is not part of the config, so a run may resume
  on another device count, and readouts agree across device counts up to the
  order of floating-point sums.

  The phases: :func:`fmjax.run.build.setup`, then (:mod:`fmjax.run.phases`)
  :func:`edit_phase` (or :func:`resume` after the last saved epoch),
  :func:`finetune_phase`, :func:`relearn_phase` and the summary.
  """
  try:
    run = setup(config, workdir, data_dir, dataset, progress, allow_partial, devices)
    unit = start(run)
    if isinstance(unit, UnlearnResult):
      return unit
    last = run.epochs if stop_after_epoch is None else min(run.epochs, stop_after_epoch)
    unit.state = finetune_phase(run, unit.state, unit.mask, unit.freeze, unit.start + 1, last,
                                unit.records)
    return finish(unit, last)
  finally:   # the next run on this directory, in this process or another, may take it
    checkpoints.release_workdir(workdir)


def unlearn_many(configs: list[UnlearnConfig], workdirs: list[str], *,
                 data_dir: str | None = None, progress: bool | None = None,
                 dataset: data.Dataset | None = None, stop_after_epoch: int | None = None,
                 devices: Any = None) -> list[UnlearnResult]:
  """Runs (or resumes) several unlearning runs, their fine-tunings stacked.

  Each run has its own work directory, edit, checkpoints, records and summary,
  exactly as :func:`unlearn` gives them. Runs whose training shares the update
  rule (:func:`fmjax.runner.stack_key`: the same training run, stages, batch,
  SGD settings and freezing; and the same epochs and epoch to start from: e.g.
  the mask methods and their seeds, Retrain's seeds, one successor's seeds)
  run their epochs as ONE compiled program with their parameters stacked
  along a leading axis (:func:`fmjax.runner.stack`); the others run alone.
  Results equal separate runs up to the order of floating-point sums.
  """
  if len(configs) != len(workdirs):
    raise ValueError(f"unlearn_many needs one work directory per config, got "
                     f"{len(configs)} configs and {len(workdirs)} work directories.")
  if len({str(pathlib.Path(w).resolve()) for w in workdirs}) != len(workdirs):
    raise ValueError("unlearn_many got the same work directory twice; give every run its own.")
  try:
    return _unlearn_many(configs, workdirs, data_dir, progress, dataset, stop_after_epoch,
                         devices)
  finally:
    for w in workdirs:
      checkpoints.release_workdir(w)


def _unlearn_many(configs, workdirs, data_dir, progress, dataset, stop_after_epoch, devices):
  mesh = sharding.mesh_or_none(devices)
  device_data: dict = {}   # one device copy of the training set per training run
  runs = [setup(c, w, data_dir, dataset, progress, devices=1 if mesh is None else mesh,
                 device_data=device_data) for c, w in zip(configs, workdirs, strict=True)]
  results: list[UnlearnResult | None] = [None] * len(runs)
  groups: dict[Any, list[tuple[int, Unit]]] = {}
  for i, run in enumerate(runs):
    unit = start(run)
    if isinstance(unit, UnlearnResult):
      results[i] = unit
      continue
    key: Any = ("nothing to train", i)
    if unit.start < run.epochs:
      key = (stack_key(run.runner(unit.mask, unit.freeze)), unit.start, run.epochs)
    groups.setdefault(key, []).append((i, unit))
  for members in groups.values():
    lead = members[0][1]
    last = (lead.run.epochs if stop_after_epoch is None
            else min(lead.run.epochs, stop_after_epoch))
    if len(members) > 1 and lead.start < last:
      stacked_finetune_phase([u for _, u in members], lead.start + 1, last)
    else:
      for _, u in members:
        u.state = finetune_phase(u.run, u.state, u.mask, u.freeze, u.start + 1, last,
                                  u.records)
    for i, u in members:
      results[i] = finish(u, last)
  return results
