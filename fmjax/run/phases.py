"""The phases of one unlearning run, each evaluated, recorded and committed per epoch.

:func:`start` restores a finished run, or resumes after the last committed epoch
(:func:`resume`), or runs the method's edit (:func:`edit_phase`); then
:func:`finetune_phase` (or :func:`stacked_finetune_phase` for several units as one
program) and :func:`finish` (:func:`relearn_phase`, the summary). An epoch is one
atomic commit (:func:`commit_epoch`): the checkpoint holds the state, the mask, a
procedure's frozen set and every record so far.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fmjax import checkpoints, finetuning, masks, readouts, sharding
from fmjax._faults import crash_point
from fmjax._progress import progress_bar
from fmjax.run.build import RunContext, check_finite_state
from fmjax.run.summary import record_line, seconds_line, summarize, summary_line
from fmjax.runner import Runner, stack
from fmjax.steps import TrainState


class UnlearnResult(NamedTuple):
  records: list[dict]
  summary: dict
  state: TrainState | None   # None: a finished run that kept no checkpoints


@dataclasses.dataclass
class Unit:
  """One run between its edit (or resume) and its end: what the epoch loop changes."""
  run: RunContext
  start: int
  state: TrainState
  mask: Any
  freeze: Any
  records: list[dict]


def edit_phase(run: RunContext) -> tuple[TrainState, Any, Any, list[dict]]:
  """Readouts of the original model, the method's edit, readouts after it; saved as epoch 0."""
  config = run.config
  start = time.perf_counter()
  original = run.evaluator(run.trained.params, run.trained.model_state)
  records = [{"phase": "original", "epoch": None, **original,
              "seconds": {"evaluate": time.perf_counter() - start}}]
  run.say(f"original: {record_line(original)}")
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  edit = run.method.edit(run.model, run.trained.params, run.trained.model_state, run.task,
                         key)
  mask = edit.mask if edit.mask is not None else run.no_mask
  # On the run's devices once: fine-tuning and every checkpoint use them as they are.
  mask, freeze = sharding.replicate((mask, edit.freeze), run.mesh)
  state = sharding.replicate(run.procedure.init(edit.params, edit.model_state), run.mesh)
  check_finite_state(state)
  start = time.perf_counter()
  after = run.evaluator(state.params, state.model_state)
  seconds = {**edit.seconds, "evaluate": time.perf_counter() - start}
  stats = masks.mask_stats(mask)
  masked = sum(s.masked for s in stats)
  info = dict(edit.info)
  if run.own_procedure:
    info["procedure"] = run.procedure.info
  if freeze is not None:
    info["frozen_fraction"] = (sum(int(jnp.sum(f)) for f in jax.tree.leaves(freeze))
                               / sum(f.size for f in jax.tree.leaves(freeze)))
  record = {"phase": "edit", "epoch": 0, **after, "seconds": seconds, "info": info,
            "masked_fraction": masked / sum(s.size for s in stats),
            "masked_layers": {s.path: s.masked for s in stats if s.masked},
            **epoch_confidences(run, state, 0)}
  crash_point("unlearn.before_commit.0")
  records.append(record)
  run.ckpt.commit(0, checkpoint_tree(run, state, mask, freeze), records)
  crash_point("unlearn.epoch.0")
  run.say(f"after the edit: {record_line(after)}  ({seconds_line(seconds)})")
  return state, mask, freeze, records


def checkpoint_tree(run: RunContext, state, mask, freeze) -> dict:
  """What one checkpoint holds (see :meth:`RunContext.like`)."""
  tree = {"state": state, "mask": mask}
  if run.own_procedure:
    tree["freeze"] = run.no_mask if freeze is None else freeze
  return tree


def resume(run: RunContext, restored: tuple[int, Any, list[dict]]
            ) -> tuple[int, TrainState, Any, Any, list[dict]]:
  """The state after the last committed epoch, and the records committed with it."""
  start_epoch, tree, records = restored
  checkpoints.write_metrics(run.workdir, records)
  run.say(f"resuming after fine-tuning epoch {start_epoch}")
  freeze = tree.get("freeze")
  if freeze is not None and not any(bool(jnp.any(f)) for f in jax.tree.leaves(freeze)):
    freeze = None   # the edit froze nothing: the same program as an uninterrupted run
  state, mask, freeze = sharding.replicate((TrainState(*tree["state"]), tree["mask"],
                                            freeze), run.mesh)
  return start_epoch, state, mask, freeze, list(records)


def finetune_phase(run: RunContext, state: TrainState, mask: Any, freeze: Any, first: int,
                    last: int, records: list[dict]) -> TrainState:
  """Fine-tuning (or procedure) epochs ``first..last``, each evaluated, saved and recorded."""
  if first > last:
    return state
  ft = run.runner(mask, freeze)
  for epoch in range(first, last + 1):
    bar = progress_bar(ft.steps(epoch), f"{run.config.method.name} {epoch}/{run.epochs}",
                       run.progress)
    start = time.perf_counter()
    state, m = ft.epoch(state, epoch, on_step=lambda m, bar=bar: bar.update(1))
    jax.block_until_ready(state.params)
    bar.close()
    commit_epoch(run, state, mask, freeze, epoch, m, ft.last_lr(epoch),
                  {"finetune": time.perf_counter() - start}, records)
  return state


def commit_epoch(run: RunContext, state: TrainState, mask: Any, freeze: Any, epoch: int,
                  m: dict, lr: float, seconds: dict, records: list[dict],
                  extra: dict | None = None) -> None:
  """Evaluates the state after ``epoch`` (with ``eval_epochs='last'`` only the last
  epoch's), records it and commits its checkpoint."""
  check_finite_state(state)
  start = time.perf_counter()
  skip = run.config.eval_epochs == "last" and epoch < run.epochs
  out = {} if skip else run.evaluator(state.params, state.model_state)
  record = {"phase": "finetune", "epoch": epoch, **out, "train_loss": m["loss"], "lr": lr,
            **(extra or {}), **epoch_confidences(run, state, epoch),
            "seconds": {**seconds, "evaluate": time.perf_counter() - start}}
  crash_point(f"unlearn.before_commit.{epoch}")
  records.append(record)
  run.ckpt.commit(epoch, checkpoint_tree(run, state, mask, freeze), records)
  crash_point(f"unlearn.epoch.{epoch}")
  shown = record_line(out) if out else f"train loss {float(m['loss']):.4f} (no readout)"
  run.say(f"epoch {epoch}/{run.epochs}: {shown}")


def stacked_finetune_phase(units: list[Unit], first: int, last: int) -> None:
  """Epochs ``first..last`` of several units as ONE compiled program
  (:func:`fmjax.runner.stack`); each unit is evaluated, recorded and
  committed after every epoch exactly as alone. A unit's ``seconds.finetune`` is its
  share (1/K) of the stacked epoch's wall time; its records say ``stacked_units: K``."""
  fts = [u.run.runner(u.mask, u.freeze) for u in units]
  stacked = stack(fts)
  lead = units[0].run
  for epoch in range(first, last + 1):
    bar = progress_bar(stacked.steps(epoch),
                       f"{len(units)} units ({', '.join(u.run.config.method.name for u in units)}) "
                       f"{epoch}/{lead.epochs}", lead.progress)
    start = time.perf_counter()
    states, ms = stacked.epoch([u.state for u in units], epoch,
                               on_step=lambda m, bar=bar: bar.update(1))
    jax.block_until_ready([s.params for s in states])
    bar.close()
    share = (time.perf_counter() - start) / len(units)
    for u, ft, state, m in zip(units, fts, states, ms, strict=True):
      u.state = state
      commit_epoch(u.run, state, u.mask, u.freeze, epoch, m, ft.last_lr(epoch),
                    {"finetune": share}, u.records, {"stacked_units": len(units)})


def relearn_phase(run: RunContext, state: TrainState, records: list[dict]) -> None:
  """The relearn readout: optimiser steps on D_f until its loss is back at the original's."""
  config, train_cfg = run.config, run.train_cfg
  threshold = config.relearn_threshold or records[0]["forget_train_loss"]
  relearn_ft = Runner(
      run.model, finetuning.finetune_procedure(
          train_cfg.lr, batch_size=run.batch_size, momentum=train_cfg.momentum,
          weight_decay=train_cfg.weight_decay, stream="forget"),
      run.images_dev, run.labels_dev, {"forget": run.task.forget}, mean=run.ds.mean,
      std=run.ds.std, seed=config.seed + 7, augment=train_cfg.augment, mesh=run.mesh)
  start = time.perf_counter()
  rel = readouts.relearn_time(run.evaluator, relearn_ft.epoch,
                              relearn_ft.init(state.params, state.model_state),
                              threshold=threshold, max_epochs=config.relearn_epochs)
  record = {"phase": "relearn", "epoch": None, "relearn_epochs": rel["epochs"],
            "relearn_steps": rel["steps"], "relearn_losses": rel["losses"],
            "relearn_threshold": rel["threshold"],
            "relearn_max_epochs": config.relearn_epochs,
            "seconds": {"relearn": time.perf_counter() - start}}
  records.append(record)
  checkpoints.write_metrics(run.workdir, records)   # recomputed, never resumed: no checkpoint
  crash_point("unlearn.relearn")


CONFIDENCES = "confidences.npz"


def epoch_confidences(run: RunContext, state: TrainState, epoch: int) -> dict:
  """With ``confidence_epochs='all'``: the state's confidences written to
  ``confidences-epoch<epoch>.npz`` (before the epoch's commit: a crash before it
  recomputes the epoch and rewrites the file), as the record's ``confidences`` entry;
  else nothing."""
  if run.config.confidence_epochs != "all":
    return {}
  name = f"confidences-epoch{epoch}.npz"
  sha = checkpoints.write_arrays(run.workdir / name,
                                 run.evaluator.confidences(state.params, state.model_state))
  return {"confidences": {"file": name, "sha256": sha}}


def confidences_phase(run: RunContext, state: TrainState, records: list[dict]) -> None:
  """The final model's per-example confidences in ``confidences.npz`` (recomputed, never
  resumed: its record holds the file's checksum)."""
  start = time.perf_counter()
  arrays = run.evaluator.confidences(state.params, state.model_state)
  sha = checkpoints.write_arrays(run.workdir / CONFIDENCES, arrays)
  records.append({"phase": "confidences", "epoch": None, "file": CONFIDENCES, "sha256": sha,
                  "examples": {k: int(arrays[k].size) for k in ("forget", "remain", "test")},
                  "seconds": {"confidences": time.perf_counter() - start}})
  checkpoints.write_metrics(run.workdir, records)
  crash_point("unlearn.confidences")


def _tail_phases(config) -> list[str]:
  """The records a finished run has after its last committed epoch."""
  return (["relearn"] if config.relearn_epochs > 0 else []) + (
      ["confidences"] if config.confidences else [])


def _confidences_intact(run: RunContext, records: list[dict]) -> bool:
  """The final confidences file (recomputed when damaged; an epoch's file is checked by
  its reader, :func:`epoch_confidences`' records name its checksum) matches its record."""
  rec = next((r for r in records if r.get("phase") == "confidences"), None)
  if rec is None:
    return True
  try:
    checkpoints.read_arrays(run.workdir / rec["file"], rec["sha256"], fix="")
  except ValueError:
    return False
  return True


def finished_result(run: RunContext, restored) -> UnlearnResult | None:
  """The result of a run that finished before (last epoch committed, its
  metrics.jsonl and summary.json complete and consistent with the checkpoint),
  else None. A run that keeps no checkpoints (``keep_checkpoints=False``) is finished
  when its files alone are: the records of every epoch, the tail and the summary (its
  result then has no state)."""
  if restored is None and run.config.keep_checkpoints:
    return None
  if restored is not None and restored[0] != run.epochs:
    return None
  try:
    summary = checkpoints.read_json(run.workdir / "summary.json", what="summary", fix="")
    records = checkpoints.read_metrics(run.workdir)
  except ValueError:   # a missing or damaged file (read_json names it as such)
    return None
  tail_phases = _tail_phases(run.config)
  if restored is not None:
    committed = restored[2]
  else:   # the epochs' records: all but the tail, the last of them the last epoch's
    committed = records[:len(records) - len(tail_phases)]
    if not committed or committed[-1].get("epoch") != run.epochs:
      return None
  tail = records[len(committed):]
  if (records[:len(committed)] != committed
      or [r.get("phase") for r in tail] != tail_phases
      or not _confidences_intact(run, tail)
      or summary != json.loads(json.dumps(summarize(run.config, records)))):
    return None
  state = None if restored is None else TrainState(*restored[1]["state"])
  return UnlearnResult(records, summary, state)


def drop_checkpoints(run: RunContext) -> None:
  """With ``keep_checkpoints=False``, deletes a finished run's checkpoints (again on a
  rerun, should a kill have come between its summary and the deletion)."""
  if not run.config.keep_checkpoints and (run.workdir / "checkpoints").exists():
    shutil.rmtree(run.workdir / "checkpoints")
    crash_point("unlearn.checkpoints_dropped")


def start(run: RunContext) -> UnlearnResult | Unit:
  """The finished result of a run done before, or the run after its edit (or resume)."""
  restored = run.ckpt.restore_latest(run.like())
  finished = finished_result(run, restored)
  if finished is not None:   # nothing to recompute
    run.ckpt.close()
    drop_checkpoints(run)
    return finished
  if restored is None:
    state, mask, freeze, records = edit_phase(run)
    return Unit(run, 0, state, mask, freeze, records)
  return Unit(run, *resume(run, restored))


def finish(unit: Unit, last: int) -> UnlearnResult:
  """After the last fine-tuning epoch: the relearn readout and the summary."""
  run, records = unit.run, unit.records
  run.ckpt.close()
  if last < run.epochs:   # stopped early on request (tests of interruption)
    return UnlearnResult(records, {}, unit.state)
  if run.config.relearn_epochs > 0:
    relearn_phase(run, unit.state, records)
  if run.config.confidences:
    confidences_phase(run, unit.state, records)
  summary = summarize(run.config, records)
  checkpoints.write_json(run.workdir / "summary.json", summary)   # last: the run is finished
  crash_point("unlearn.summary")
  drop_checkpoints(run)
  if run.progress is not False:
    print(summary_line(summary), file=sys.stderr, flush=True)
  return UnlearnResult(records, summary, unit.state)
