"""One unlearning run: a trained checkpoint, a method, a forget set -> records.

:func:`unlearn` loads the original model from its training work directory,
builds the :class:`fmjax.methods.UnlearnTask` (a full class, a random subset
across classes, or the outliers the model was trained with), runs the
method's edit, then the shared fine-tuning routine (or the method's own
training procedure, :mod:`fmjax.procedures`, in the same epoch loop), and
evaluates with the shared readouts:

* on the original model (``phase: original``),
* right after the edit (``phase: edit``, epoch 0: the "mask only" numbers),
* after every fine-tuning epoch (``phase: finetune``),
* once at the end, relearn time (``phase: relearn``).

Everything goes to ``metrics.jsonl`` in the run's work directory, with
``config.json``, an orbax checkpoint per epoch (state, optimiser and mask)
and ``summary.json``. Killed and restarted with the same config, a run
resumes after its last completed epoch and ends exactly where an
uninterrupted run ends.

Every phase splits its batches across ``devices`` (:mod:`fmjax.sharding`).
:func:`unlearn_many` runs several such runs at once, the fine-tunings that
stack as one compiled program (:func:`fmjax.runner.stack`): the paper's
fine-tuning, Retrain and every method's own procedure alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fmjax import _checks, checkpoints, data, finetuning, masks, readouts, sharding, training
from fmjax._faults import crash_point
from fmjax._progress import progress_bar
from fmjax.methods import METHODS, REMAIN_REQUIRED, MethodSettings, UnlearnTask, get_method
from fmjax.procedures import Budget, Procedure
from fmjax.runner import Runner, stack, stack_key, steps_per_epoch
from fmjax.steps import TrainState


def default_ratio(dataset: str) -> float:
  """The paper's mask ratio: 0.02 on CIFAR-10/100, 0.04 on MNIST-like data and Tiny-ImageNet."""
  return 0.02 if data.DATASETS[dataset].family == "cifar" else 0.04


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
  """Settings of one unlearning run (everything that changes its result).

  Attributes:
    checkpoint: the training run's work directory (the original model).
    method: a name in :data:`fmjax.methods.METHODS`.
    forget_classes: the classes to remove; None = the outliers the training
      run was given (``noise_fraction``), the outlier-deletion setting, or
      the random subset of ``forget_random``.
    forget_random: forget this fraction of the training set, drawn uniformly
      across classes with the run's seed (the protocol's random-subset
      forgetting; 0.1 in its tables). Needs ``forget_classes=None``.
    settings: the methods' hyper-parameters (mask ratio etc.).
    epochs: fine-tuning epochs T; None = the method's default (30; 0 for
      fisher_noise, influence and ssd; the original epochs for retrain; the
      published epochs of a method with its own procedure).
    compress_epochs: S, the epochs the original schedule is replayed in.
    lr: 'compressed' (the paper; for a method with its own procedure, its
      published constant rate), or a constant rate (the ablation; the
      procedure's rate).
    batch_size: fine-tuning batch; None = the training batch size.
    freeze_mask: keep masked weights at zero during fine-tuning.
    remain_limit: K: methods see only K random remain examples, for scoring
      and for fine-tuning (Section 4.3). None: all of D_r.
    no_remain: methods see no remain data at all (forget data only).
    seed: seeds the edit's key, data subsets and fine-tuning order.
    eval_limit: remain/forget training examples evaluated per readout.
    mia: membership-inference readout.
    relearn_epochs: max epochs of the relearn readout (0: skip it).
    relearn_threshold: forget-set loss that counts as relearned; None = the
      original model's forget-set loss.
  """
  checkpoint: str
  method: str
  forget_classes: tuple[int, ...] | None = (0,)
  forget_random: float | None = None
  settings: MethodSettings = MethodSettings()
  epochs: int | None = None
  compress_epochs: float = 5.0
  lr: Literal["compressed"] | float = "compressed"
  batch_size: int | None = None
  freeze_mask: bool = False
  remain_limit: int | None = None
  no_remain: bool = False
  seed: int = 0
  eval_limit: int | None = 10_000
  mia: bool = True
  relearn_epochs: int = 10
  relearn_threshold: float | None = None

  def __post_init__(self):
    _checks.check_fields(self, {"epochs": ">=0", "compress_epochs": ">0", "batch_size": ">=1",
                                "remain_limit": ">=1", "eval_limit": ">=1",
                                "relearn_epochs": ">=0", "relearn_threshold": ">0"})
    if self.forget_random is not None:
      if not (isinstance(self.forget_random, int | float) and 0 < self.forget_random < 1):
        raise ValueError(f"forget_random (--forget-random) must be a fraction in (0, 1), got "
                         f"{self.forget_random!r} (the protocol uses 0.1).")
      if self.forget_classes is not None:
        raise ValueError(f"forget_random={self.forget_random} and forget_classes="
                         f"{list(self.forget_classes)} both name a forget set; give one (with "
                         "forget_random, set forget_classes=None).")
    if not (self.lr == "compressed" or (isinstance(self.lr, int | float)
                                         and not isinstance(self.lr, bool) and self.lr > 0)):
      raise ValueError(f"lr (--lr) must be 'compressed' or a rate > 0, got {self.lr!r}.")
    _checks.check_fields(self.settings, {
        "ratio": "(0,1]", "score_batch_size": ">=1", "score_limit": ">=1", "ig_steps": ">=1",
        "ig_limit": ">=1", "noise_alpha": ">0", "influence_damping": ">=0",
        "influence_iters": ">=1", "influence_examples": ">=1", "fisher_chunk": ">=1",
        "ssd_alpha": ">0", "ssd_lambda": ">0", "ssd_batch_size": ">=1",
        "salun_fraction": "(0,1]", "scrub_temperature": ">0", "scrub_kl_weight": ">=0",
        "scrub_ce_weight": ">=0", "scrub_max_epochs": ">=0", "scrub_forget_batch_size": ">=1",
        "l1_gamma": ">=0", "neggrad_beta": "[0,1]", "neggrad_forget_batch_size": ">=1"})

  def to_json(self) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(self), default=list))

  @classmethod
  def from_json(cls, raw: dict) -> UnlearnConfig:
    raw = dict(raw)
    raw["settings"] = MethodSettings(**raw.get("settings", {}))
    if raw.get("forget_classes") is not None:
      raw["forget_classes"] = tuple(raw["forget_classes"])
    return cls(**raw)


def make_config(checkpoint: str, method: str, *, ratio: float | None = None,
                **overrides: Any) -> UnlearnConfig:
  """An :class:`UnlearnConfig` with the paper's defaults for the checkpoint's dataset.

  ``ratio`` None takes :func:`default_ratio`; other :class:`MethodSettings`
  fields may be passed by name; None values keep defaults.
  """
  get_method(method)
  setting_names = {f.name for f in dataclasses.fields(MethodSettings)}
  setting_over = {k: overrides.pop(k) for k in list(overrides) if k in setting_names}
  train_cfg = training.read_config(checkpoint)
  ratio = default_ratio(train_cfg.dataset) if ratio is None else ratio
  settings = MethodSettings(ratio=ratio, **{k: v for k, v in setting_over.items()
                                            if v is not None})
  unknown = set(overrides) - {f.name for f in dataclasses.fields(UnlearnConfig)}
  if unknown:
    raise ValueError(f"unknown unlearning settings {sorted(unknown)}.")
  values = {k: v for k, v in overrides.items() if v is not None or k == "forget_classes"}
  if values.get("forget_random") is not None and "forget_classes" not in values:
    values["forget_classes"] = None   # the random subset replaces the default class 0
  if "forget_classes" in values and values["forget_classes"] is not None:
    values["forget_classes"] = tuple(int(c) for c in np.atleast_1d(values["forget_classes"]))
  # runs/x/ and runs/x are one training run: the config must not tell them apart.
  return UnlearnConfig(checkpoint=os.path.normpath(str(checkpoint)), method=method,
                       settings=settings, **values)


def build_task(config: UnlearnConfig, train_cfg: training.TrainConfig, ds: data.Dataset,
               progress: bool | None = None, mesh: Any = None
               ) -> tuple[UnlearnTask, np.ndarray]:
  """The task the method sees and the indices of the WHOLE remain set."""
  images, labels, outliers = training.training_set(train_cfg, ds)
  if config.forget_random is not None:
    if outliers is not None:
      raise ValueError("this model was trained with outliers (noise_fraction="
                       f"{train_cfg.noise_fraction}); its forget set is the outliers: omit "
                       "forget_random.")
    split = data.random_split(len(labels), config.forget_random, config.seed)
    forget, remain_all = split.forget, split.remain
    classes, true_labels = None, None
  elif config.forget_classes is None:
    if outliers is None:
      raise ValueError("no forget set: pass forget classes (e.g. --forget-class 0) or a "
                       "random fraction (--forget-random 0.1), or train the original model "
                       "with --noise-fraction for outlier deletion.")
    forget, remain_all = outliers.forget, outliers.remain
    classes, true_labels = None, outliers.true_labels
  else:
    bad = [c for c in config.forget_classes if not 0 <= c < ds.num_classes]
    if bad:
      raise ValueError(f"forget class(es) {bad} do not exist: {ds.name} has classes 0.."
                       f"{ds.num_classes - 1}.")
    if outliers is not None:
      raise ValueError("this model was trained with outliers (noise_fraction="
                       f"{train_cfg.noise_fraction}); its forget set is the outliers: omit "
                       "the forget classes.")
    split = data.class_split(labels, config.forget_classes)
    forget, remain_all = split.forget, split.remain
    classes, true_labels = tuple(config.forget_classes), None
  remain = remain_all
  if config.no_remain:
    remain = None
  elif config.remain_limit is not None:
    remain = data.limited_subset(remain_all, config.remain_limit, config.seed)
  task = UnlearnTask(images, labels, forget, remain, ds.test_images, ds.test_labels,
                     ds.num_classes, ds.mean, ds.std, classes, true_labels, progress=progress,
                     mesh=mesh)
  return task, remain_all


def run_epochs(config: UnlearnConfig, train_cfg: training.TrainConfig) -> int:
  """T for this run: the config's epochs, else the method's default."""
  method = get_method(config.method)
  if config.epochs is not None:
    if config.epochs < 0:
      raise ValueError(f"epochs must be >= 0, got {config.epochs}.")
    return config.epochs
  return train_cfg.epochs if method.epochs is None else method.epochs


def check_setting(config: UnlearnConfig, task: UnlearnTask, epochs: int,
                  procedure: Procedure) -> None:
  """Refuses a method that cannot serve the requested setting, saying why: its edit
  needs remain data, or ``procedure`` (its own, or the shared fine-tuning) trains on
  it, and the run has none."""
  method = get_method(config.method)
  if method.classes_only and task.setting != "class":
    what = "outliers" if task.setting == "outliers" else "a random subset"
    raise ValueError(f"{method.name} removes whole classes only (it compares classes); it "
                     f"cannot forget {what}. Methods that can: "
                     f"{', '.join(m for m, s in METHODS.items() if not s.classes_only)}.")
  if task.remain is None:
    if method.remain == REMAIN_REQUIRED:
      raise ValueError(f"{method.name} needs remain data and the run has none (no_remain); "
                       "methods that score from the forget set alone: "
                       f"{', '.join(m for m, s in METHODS.items() if s.remain != REMAIN_REQUIRED)}"
                       ".")
    if epochs > 0 and "remain" in procedure.streams:
      what = ("fine-tuning needs" if method.procedure is None
              else f"{method.name}'s procedure trains on")
      raise ValueError(f"{what} remain data and the run has none (no_remain); set "
                       f"epochs=0 (--epochs 0) to evaluate {method.name}'s edit alone.")
  if config.freeze_mask and not method.masks:
    raise ValueError(f"freeze_mask applies to masking methods; {method.name} masks nothing.")


class UnlearnResult(NamedTuple):
  records: list[dict]
  summary: dict
  state: TrainState


def _finite_state(state) -> None:
  _checks.check_finite_tree(
      state.params, name="the model's parameters",
      fix="The model diverged: lower the fine-tuning learning rate or the method's step "
          "(e.g. influence damping).")


@dataclasses.dataclass
class _Run:
  """What every phase of one unlearning run shares (built once by :func:`_setup`)."""
  config: UnlearnConfig
  method: Any
  train_cfg: training.TrainConfig
  model: Any
  trained: TrainState
  ds: data.Dataset
  task: UnlearnTask
  epochs: int
  workdir: pathlib.Path
  evaluator: readouts.Evaluator
  procedure: Procedure   # the method's own, or the shared fine-tuning
  batch_size: int
  images_dev: Any
  labels_dev: Any
  no_mask: Any
  ckpt: checkpoints.Checkpoints
  progress: bool | None
  mesh: Any = None

  @property
  def own_procedure(self) -> bool:
    """The method brings its own training (its edit's ``freeze`` is checkpointed)."""
    return self.method.procedure is not None

  def say(self, message: str) -> None:
    if self.progress is not False:
      print(f"[{self.config.method}] {message}", file=sys.stderr, flush=True)

  def runner(self, mask: Any, freeze: Any = None) -> Runner:
    """The epoch loop's runner of this run's procedure: a method's own freezes
    ``freeze`` (the entries its edit froze), the shared fine-tuning freezes ``mask``
    when the config asks for it."""
    if not self.own_procedure:
      freeze = mask if self.config.freeze_mask else None
    teacher = ((self.trained.params, self.trained.model_state) if self.procedure.teacher
               else None)
    return Runner(self.model, self.procedure, self.images_dev, self.labels_dev,
                  {"remain": self.task.remain, "forget": self.task.forget},
                  mean=self.ds.mean, std=self.ds.std, seed=self.config.seed,
                  num_classes=self.task.num_classes, augment=self.train_cfg.augment,
                  freeze=freeze, teacher=teacher, mesh=self.mesh)

  def like(self) -> dict:
    """The structure of this run's checkpoints (state, mask; a procedure's freeze)."""
    tree = {"state": self.procedure.init(self.trained.params, self.trained.model_state),
            "mask": self.no_mask}
    if self.own_procedure:
      tree["freeze"] = self.no_mask
    return tree


def _setup(config: UnlearnConfig, workdir: str, data_dir: str | None, dataset, progress,
           allow_partial: bool = False, devices: Any = None,
           device_data: dict | None = None) -> _Run:
  """Loads the trained model, builds and checks the task, claims the work directory.

  With several ``devices`` (:mod:`fmjax.sharding`) the training images and
  the original model are replicated on them once, here. ``device_data``, a
  dict shared by several runs (:func:`unlearn_many`), holds one device copy of
  each training run's images and labels for all of them."""
  method = get_method(config.method)
  if pathlib.Path(workdir).resolve() == pathlib.Path(config.checkpoint).resolve():
    raise ValueError(f"--workdir {workdir} is the training run's own directory; give the "
                     "unlearning run a directory of its own (the trained model stays as it "
                     "is).")
  train_cfg, model, trained, ds = training.load_trained(config.checkpoint, data_dir=data_dir,
                                                       dataset=dataset,
                                                       allow_partial=allow_partial)
  mesh = sharding.mesh_or_none(devices)
  trained = sharding.replicate(trained, mesh)
  task, remain_all = build_task(config, train_cfg, ds, progress, mesh)
  epochs = run_epochs(config, train_cfg)
  batch_size = config.batch_size or train_cfg.batch_size
  procedure = _procedure(config, method, train_cfg, task, epochs, batch_size)
  check_setting(config, task, epochs, procedure)
  workdir = checkpoints.claim_workdir(workdir, config.to_json())
  evaluator = readouts.Evaluator(model, task, remain_all, eval_limit=config.eval_limit,
                                 mia=config.mia, seed=config.seed)
  no_mask = sharding.replicate(jax.tree.map(lambda x: jnp.zeros(x.shape, bool),
                                            trained.params), mesh)
  device_data = {} if device_data is None else device_data
  if config.checkpoint not in device_data:
    device_data[config.checkpoint] = sharding.replicate(
        (jnp.asarray(task.images), jnp.asarray(task.labels)), mesh)
  return _Run(config, method, train_cfg, model, trained, ds, task, epochs, workdir, evaluator,
              procedure, batch_size, *device_data[config.checkpoint], no_mask,
              checkpoints.Checkpoints(workdir), progress, mesh)


def _procedure(config: UnlearnConfig, method: Any, train_cfg: training.TrainConfig,
               task: UnlearnTask, epochs: int, batch_size: int) -> Procedure:
  """The run's training: the method's own procedure at its rate (the config's constant
  rate when given), or the shared fine-tuning on D_r at the compressed (Retrain: the
  original) schedule or the config's constant rate."""
  sgd = {"momentum": train_cfg.momentum, "weight_decay": train_cfg.weight_decay}
  if method.procedure is not None:
    rate = method.lr if config.lr == "compressed" else float(config.lr)
    return method.procedure(task, config.settings, Budget(epochs, rate, batch_size, **sgd))
  stream = task.remain if task.remain is not None else task.forget   # epochs 0 when none
  spe = steps_per_epoch(len(stream), batch_size)
  mode = "original" if method.schedule == "original" else config.lr
  lr = finetuning.finetune_schedule(train_cfg.schedule, mode, steps_per_epoch=spe,
                                    compress_epochs=config.compress_epochs)
  return finetuning.finetune_procedure(lr, batch_size=batch_size, **sgd)


def _edit_phase(run: _Run) -> tuple[TrainState, Any, Any, list[dict]]:
  """Readouts of the original model, the method's edit, readouts after it; saved as epoch 0."""
  config = run.config
  start = time.perf_counter()
  original = run.evaluator(run.trained.params, run.trained.model_state)
  records = [{"phase": "original", "epoch": None, **original,
              "seconds": {"evaluate": time.perf_counter() - start}}]
  run.say(f"original: {_line(original)}")
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  edit = run.method.fn(run.model, run.trained.params, run.trained.model_state, run.task,
                       config.settings, key)
  mask = edit.mask if edit.mask is not None else run.no_mask
  # On the run's devices once: fine-tuning and every checkpoint use them as they are.
  mask, freeze = sharding.replicate((mask, edit.freeze), run.mesh)
  state = sharding.replicate(run.procedure.init(edit.params, edit.model_state), run.mesh)
  _finite_state(state)
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
            "masked_layers": {s.path: s.masked for s in stats if s.masked}}
  crash_point("unlearn.before_commit.0")
  records.append(record)
  run.ckpt.commit(0, _tree(run, state, mask, freeze), records)
  crash_point("unlearn.epoch.0")
  run.say(f"after the edit: {_line(after)}  ({_seconds(seconds)})")
  return state, mask, freeze, records


def _tree(run: _Run, state, mask, freeze) -> dict:
  """What one checkpoint holds (see :meth:`_Run.like`)."""
  tree = {"state": state, "mask": mask}
  if run.own_procedure:
    tree["freeze"] = run.no_mask if freeze is None else freeze
  return tree


def _resume(run: _Run, restored: tuple[int, Any, list[dict]]
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


def _finetune_phase(run: _Run, state: TrainState, mask: Any, freeze: Any, first: int,
                    last: int, records: list[dict]) -> TrainState:
  """Fine-tuning (or procedure) epochs ``first..last``, each evaluated, saved and recorded."""
  if first > last:
    return state
  ft = run.runner(mask, freeze)
  for epoch in range(first, last + 1):
    bar = progress_bar(ft.steps(epoch), f"{run.config.method} {epoch}/{run.epochs}",
                       run.progress)
    start = time.perf_counter()
    state, m = ft.epoch(state, epoch, on_step=lambda m, bar=bar: bar.update(1))
    jax.block_until_ready(state.params)
    bar.close()
    _commit_epoch(run, state, mask, freeze, epoch, m, ft.last_lr(epoch),
                  {"finetune": time.perf_counter() - start}, records)
  return state


def _commit_epoch(run: _Run, state: TrainState, mask: Any, freeze: Any, epoch: int,
                  m: dict, lr: float, seconds: dict, records: list[dict],
                  extra: dict | None = None) -> None:
  """Evaluates the state after ``epoch``, records it and commits its checkpoint."""
  _finite_state(state)
  start = time.perf_counter()
  out = run.evaluator(state.params, state.model_state)
  record = {"phase": "finetune", "epoch": epoch, **out, "train_loss": m["loss"], "lr": lr,
            **(extra or {}),
            "seconds": {**seconds, "evaluate": time.perf_counter() - start}}
  crash_point(f"unlearn.before_commit.{epoch}")
  records.append(record)
  run.ckpt.commit(epoch, _tree(run, state, mask, freeze), records)
  crash_point(f"unlearn.epoch.{epoch}")
  run.say(f"epoch {epoch}/{run.epochs}: {_line(out)}")


def _stacked_finetune_phase(units: list[_Unit], first: int, last: int) -> None:
  """Epochs ``first..last`` of several units as ONE compiled program
  (:func:`fmjax.runner.stack`); each unit is evaluated, recorded and
  committed after every epoch exactly as alone. A unit's ``seconds.finetune`` is its
  share (1/K) of the stacked epoch's wall time; its records say ``stacked_units: K``."""
  fts = [u.run.runner(u.mask, u.freeze) for u in units]
  stacked = stack(fts)
  lead = units[0].run
  for epoch in range(first, last + 1):
    bar = progress_bar(stacked.steps(epoch),
                       f"{len(units)} units ({', '.join(u.run.config.method for u in units)}) "
                       f"{epoch}/{lead.epochs}", lead.progress)
    start = time.perf_counter()
    states, ms = stacked.epoch([u.state for u in units], epoch,
                               on_step=lambda m, bar=bar: bar.update(1))
    jax.block_until_ready([s.params for s in states])
    bar.close()
    share = (time.perf_counter() - start) / len(units)
    for u, ft, state, m in zip(units, fts, states, ms, strict=True):
      u.state = state
      _commit_epoch(u.run, state, u.mask, u.freeze, epoch, m, ft.last_lr(epoch),
                    {"finetune": share}, u.records, {"stacked_units": len(units)})


def _relearn_phase(run: _Run, state: TrainState, records: list[dict]) -> None:
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


def _finished(run: _Run, restored) -> UnlearnResult | None:
  """The result of a run that finished before (last epoch committed, its
  metrics.jsonl and summary.json complete and consistent with the checkpoint),
  else None."""
  if restored is None or restored[0] != run.epochs:
    return None
  try:
    summary = checkpoints.read_json(run.workdir / "summary.json", what="summary", fix="")
    records = checkpoints.read_metrics(run.workdir)
  except ValueError:
    return None
  committed = restored[2]
  tail = records[len(committed):]
  relearn = run.config.relearn_epochs > 0
  if (records[:len(committed)] != committed or len(tail) != int(relearn)
      or (relearn and tail[0].get("phase") != "relearn")
      or summary != json.loads(json.dumps(summarize(run.config, records)))):
    return None
  return UnlearnResult(records, summary, TrainState(*restored[1]["state"]))


@dataclasses.dataclass
class _Unit:
  """One run between its edit (or resume) and its end: what the epoch loop changes."""
  run: _Run
  start: int
  state: TrainState
  mask: Any
  freeze: Any
  records: list[dict]


def _start(run: _Run) -> UnlearnResult | _Unit:
  """The finished result of a run done before, or the run after its edit (or resume)."""
  restored = run.ckpt.restore_latest(run.like())
  finished = _finished(run, restored)
  if finished is not None:   # nothing to recompute
    run.ckpt.close()
    return finished
  if restored is None:
    state, mask, freeze, records = _edit_phase(run)
    return _Unit(run, 0, state, mask, freeze, records)
  return _Unit(run, *_resume(run, restored))


def _finish(unit: _Unit, last: int) -> UnlearnResult:
  """After the last fine-tuning epoch: the relearn readout and the summary."""
  run, records = unit.run, unit.records
  run.ckpt.close()
  if last < run.epochs:   # stopped early on request (tests of interruption)
    return UnlearnResult(records, {}, unit.state)
  if run.config.relearn_epochs > 0:
    _relearn_phase(run, unit.state, records)
  summary = summarize(run.config, records)
  checkpoints.write_json(run.workdir / "summary.json", summary)   # last: the run is finished
  crash_point("unlearn.summary")
  if run.progress is not False:
    print(summary_line(summary), file=sys.stderr, flush=True)
  return UnlearnResult(records, summary, unit.state)


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

  The phases, each a function of this module: :func:`_setup`, then
  :func:`_edit_phase` (or :func:`_resume` after the last saved epoch),
  :func:`_finetune_phase`, :func:`_relearn_phase` and the summary.
  """
  run = _setup(config, workdir, data_dir, dataset, progress, allow_partial, devices)
  unit = _start(run)
  if isinstance(unit, UnlearnResult):
    return unit
  last = run.epochs if stop_after_epoch is None else min(run.epochs, stop_after_epoch)
  unit.state = _finetune_phase(run, unit.state, unit.mask, unit.freeze, unit.start + 1, last,
                               unit.records)
  return _finish(unit, last)


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
  mesh = sharding.mesh_or_none(devices)
  device_data: dict = {}   # one device copy of the training set per training run
  runs = [_setup(c, w, data_dir, dataset, progress, devices=1 if mesh is None else mesh,
                 device_data=device_data) for c, w in zip(configs, workdirs, strict=True)]
  results: list[UnlearnResult | None] = [None] * len(runs)
  groups: dict[Any, list[tuple[int, _Unit]]] = {}
  for i, run in enumerate(runs):
    unit = _start(run)
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
      _stacked_finetune_phase([u for _, u in members], lead.start + 1, last)
    else:
      for _, u in members:
        u.state = _finetune_phase(u.run, u.state, u.mask, u.freeze, u.start + 1, last,
                                  u.records)
    for i, u in members:
      results[i] = _finish(u, last)
  return results


def _line(r: dict) -> str:
  keys = [("forget_test_accuracy", "forget test"), ("remain_test_accuracy", "remain test"),
          ("test_accuracy", "test"), ("noise_accuracy", "noise"),
          ("mia_member_rate", "MIA member rate")]
  shown = [(label, r[k]) for k, label in keys if r.get(k) is not None]
  if "forget_test_accuracy" in r:
    shown = [s for s in shown if s[0] != "test"]
  return ", ".join(f"{label} {v:.4f}" for label, v in shown)


def _seconds(s: dict) -> str:
  return ", ".join(f"{k} {v:.1f}s" for k, v in s.items())


def summarize(config: UnlearnConfig, records: list[dict]) -> dict:
  """The run's headline numbers from its records (used for tables)."""
  by_phase = {p: [r for r in records if r["phase"] == p] for p in
              ("original", "edit", "finetune", "relearn")}
  curve = by_phase["edit"] + by_phase["finetune"]
  final = curve[-1]
  seconds: dict[str, float] = {}
  for r in records:
    for k, v in r.get("seconds", {}).items():
      seconds[k] = seconds.get(k, 0.0) + v
  out = {"method": config.method, "seed": config.seed, "epochs": len(by_phase["finetune"]),
         "original": {k: v for k, v in by_phase["original"][0].items()
                      if k not in ("phase", "epoch", "seconds")},
         "mask_only": {k: v for k, v in curve[0].items()
                       if k not in ("phase", "epoch", "seconds", "info", "masked_layers")},
         "final": {k: v for k, v in final.items()   # a readout, however it was computed
                   if k not in ("phase", "epoch", "seconds", "info", "masked_layers",
                                "stacked_units")},
         "seconds": seconds}
  for name, kind in (("forget_test_accuracy", "forget"), ("remain_test_accuracy", "remain"),
                     ("test_accuracy", "remain"), ("noise_accuracy", "remain")):
    values = [r.get(name) for r in curve]
    if any(v is not None for v in values):
      out.setdefault("volatility", {})[name] = readouts.volatility(values, kind=kind)
  for name in ("test_accuracy", "noise_accuracy"):
    values = [r[name] for r in curve if r.get(name) is not None]
    if values:
      out[f"best_{name}"] = max(values)
  if by_phase["relearn"]:
    out["relearn_epochs"] = by_phase["relearn"][0]["relearn_epochs"]
    out["relearn_steps"] = by_phase["relearn"][0].get("relearn_steps")
  # The protocol's accuracies; its RTE is a wall time like ``seconds``: run_time(records).
  out["protocol"] = readouts.protocol_readouts(final, setting=config_setting(config))
  return out


def config_setting(config: UnlearnConfig) -> str:
  """'class', 'random' or 'outliers': the forget set a config asks for."""
  if config.forget_classes is not None:
    return "class"
  return "random" if config.forget_random is not None else "outliers"


def run_time(records: list[dict]) -> float:
  """RTE: seconds of the unlearning itself, the edit's phases and every fine-tuning
  (or procedure) epoch, without any evaluation or the relearn readout."""
  total = 0.0
  for r in records:
    if r["phase"] in ("edit", "finetune"):
      total += sum(v for k, v in r.get("seconds", {}).items() if k != "evaluate")
  return total


def summary_line(summary: dict) -> str:
  """One human line per method."""
  f, m = summary["final"], summary["mask_only"]
  parts = []
  if f.get("forget_test_accuracy") is not None:
    parts.append(f"forget test {f['forget_test_accuracy']:.3f} (edit only "
                 f"{m['forget_test_accuracy']:.3f})")
    parts.append(f"remain test {f['remain_test_accuracy']:.3f} (edit only "
                 f"{m['remain_test_accuracy']:.3f})")
  else:
    parts.append(f"test {f['test_accuracy']:.3f}")
    if f.get("noise_accuracy") is not None:
      parts.append(f"noise {f['noise_accuracy']:.3f}")
  if f.get("mia_member_rate") is not None:
    parts.append(f"MIA member rate {f['mia_member_rate']:.3f}")
  if "relearn_epochs" in summary:
    r, s = summary["relearn_epochs"], summary.get("relearn_steps")
    parts.append(f"relearn {'>max' if r is None else r} epochs "
                 f"({'>max' if s is None else s} steps)")
  total = sum(summary["seconds"].values())
  parts.append(f"{summary['epochs']} epochs, {total:.0f}s")
  return f"{summary['method']}: " + ", ".join(parts)
