"""Building a run: its task (forget, remain, test views), its epochs, its training
procedure, the checks that refuse what a method cannot serve, and the context every
phase shares (:class:`RunContext`, made once by :func:`setup`)."""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fmjax import _checks, checkpoints, data, finetuning, readouts, sharding, training
from fmjax.methods import REMAIN_REQUIRED, FineTuned, Method, UnlearnTask, registry
from fmjax.procedures import Budget, Procedure
from fmjax.run.config import LEGACY_FIX, UnlearnConfig, config_setting, is_legacy
from fmjax.runner import Runner, steps_per_epoch
from fmjax.steps import TrainState


def build_task(config: UnlearnConfig, train_cfg: training.TrainConfig, ds: data.Dataset,
               progress: bool | None = None, mesh: Any = None
               ) -> tuple[UnlearnTask, np.ndarray]:
  """The task the method sees and the indices of the WHOLE remain set."""
  if config.split == "salun":
    if train_cfg.holdout_seed is None:
      raise ValueError("split='salun' unlearns on SalUn's hold-out split: the original must "
                       "be trained with one (train --holdout-seed 1, SalUn's code).")
    # SalUn's code: the unlearning's training set leaves out the hold-out of the RUN's
    # seed, whatever hold-out the original was trained without.
    train_cfg = dataclasses.replace(train_cfg, holdout_seed=config.seed)
  images, labels, outliers = training.training_set(train_cfg, ds)
  draw = config.draw_seed
  if config.forget_random is not None:
    if outliers is not None:
      raise ValueError("this model was trained with outliers (noise_fraction="
                       f"{train_cfg.noise_fraction}); its forget set is the outliers: omit "
                       "forget_random.")
    if config.split == "salun":
      split = data.salun_forget(labels, draw - 1,
                                round(config.forget_random * len(labels)))
    else:
      split = data.random_split(len(labels), config.forget_random, draw)
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
    if config.split == "salun":   # its draw of the whole class: the same set
      split = data.salun_forget(labels, draw - 1, len(split.forget),
                                config.forget_classes)
    forget, remain_all = split.forget, split.remain
    classes, true_labels = tuple(config.forget_classes), None
  remain = remain_all
  if config.no_remain:
    remain = None
  elif config.remain_limit is not None:
    remain = data.limited_subset(remain_all, config.remain_limit, draw)
  task = UnlearnTask(images, labels, forget, remain, ds.test_images, ds.test_labels,
                     ds.num_classes, ds.mean, ds.std, classes, true_labels, progress=progress,
                     mesh=mesh)
  return task, remain_all


def run_epochs(config: UnlearnConfig, train_cfg: training.TrainConfig) -> int:
  """T for this run: the method's epochs (None: the original training's)."""
  epochs = config.method.epochs
  return train_cfg.epochs if epochs is None else epochs


def shares_finetuning(method: Method) -> bool:
  """Whether the method's training is the paper's shared fine-tuning (FineTuned's own)."""
  return isinstance(method, FineTuned) and type(method).procedure is FineTuned.procedure


def check_request(config: UnlearnConfig) -> None:
  """What can be refused from the config alone, before the model and data load: a
  class-only method asked to forget a random subset or outliers."""
  method, setting = config.method, config_setting(config)
  if method.classes_only and setting != "class":
    what = "outliers" if setting == "outliers" else "a random subset"
    raise ValueError(f"{method.name} removes whole classes only (it compares classes); it "
                     f"cannot forget {what}. Methods that can: "
                     f"{', '.join(m for m, c in registry().items() if not c.classes_only)}.")


def check_setting(config: UnlearnConfig, task: UnlearnTask, epochs: int,
                  procedure: Procedure) -> None:
  """Refuses a method that cannot serve the requested setting, saying why: its edit
  needs remain data, or ``procedure`` (its own, or the shared fine-tuning) trains on
  it, and the run has none."""
  method = config.method
  known = registry()
  check_request(config)
  if task.remain is None:
    if method.remain == REMAIN_REQUIRED:
      raise ValueError(f"{method.name} needs remain data and the run has none (no_remain); "
                       "methods that score from the forget set alone: "
                       f"{', '.join(m for m, c in known.items() if c.remain != REMAIN_REQUIRED)}"
                       ".")
    if epochs > 0 and "remain" in procedure.streams:
      what = ("fine-tuning needs" if shares_finetuning(method)
              else f"{method.name}'s procedure trains on")
      raise ValueError(f"{what} remain data and the run has none (no_remain); set "
                       f"epochs=0 (--epochs 0) to evaluate {method.name}'s edit alone.")


def check_finite_state(state) -> None:
  _checks.check_finite_tree(
      state.params, name="the model's parameters",
      fix="The model diverged: lower the fine-tuning learning rate or the method's step "
          "(e.g. influence damping).")


@dataclasses.dataclass
class RunContext:
  """What every phase of one unlearning run shares (built once by :func:`setup`)."""
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
    return not shares_finetuning(self.method)

  def say(self, message: str) -> None:
    if self.progress is not False:
      print(f"[{self.config.method.name}] {message}", file=sys.stderr, flush=True)

  def runner(self, mask: Any, freeze: Any = None) -> Runner:
    """The epoch loop's runner of this run's procedure: a method's own freezes
    ``freeze`` (the entries its edit froze), the shared fine-tuning freezes ``mask``
    when the config asks for it."""
    if not self.own_procedure:
      freeze = mask if getattr(self.method, "freeze_mask", False) else None
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


def setup(config: UnlearnConfig, workdir: str, data_dir: str | None, dataset, progress,
           allow_partial: bool = False, devices: Any = None,
           device_data: dict | None = None) -> RunContext:
  """Loads the trained model, builds and checks the task, claims the work directory.

  With several ``devices`` (:mod:`fmjax.sharding`) the training images and
  the original model are replicated on them once, here. ``device_data``, a
  dict shared by several runs (:func:`unlearn_many`), holds one device copy of
  each training run's images and labels for all of them."""
  if pathlib.Path(workdir).resolve() == pathlib.Path(config.checkpoint).resolve():
    raise ValueError(f"--workdir {workdir} is the training run's own directory; give the "
                     "unlearning run a directory of its own (the trained model stays as it "
                     "is).")
  check_request(config)                   # before minutes of loading the model and data
  mesh = sharding.mesh_or_none(devices)
  train_cfg, model, trained, ds = training.load_trained(config.checkpoint, data_dir=data_dir,
                                                       dataset=dataset,
                                                       allow_partial=allow_partial)
  config = dataclasses.replace(config,
                               method=config.method.for_data(data.DATASETS[train_cfg.dataset]))
  method = config.method
  trained = sharding.replicate(trained, mesh)
  task, remain_all = build_task(config, train_cfg, ds, progress, mesh)
  epochs = run_epochs(config, train_cfg)
  budget = budget_for(method, train_cfg, task, epochs)
  batch_size = budget.batch_size
  procedure = method.procedure(task, budget)
  check_setting(config, task, epochs, procedure)
  workdir = checkpoints.claim_workdir(workdir, config.to_json(), refuse=lambda old: (
      LEGACY_FIX if is_legacy(old) else None), paths=("checkpoint",))
  evaluator = readouts.Evaluator(model, task, remain_all, eval_limit=config.eval_limit,
                                 mia=config.mia, test_limit=config.test_limit,
                                 seed=config.draw_seed)
  no_mask = sharding.replicate(jax.tree.map(lambda x: jnp.zeros(x.shape, bool),
                                            trained.params), mesh)
  device_data = {} if device_data is None else device_data
  if config.checkpoint not in device_data:
    device_data[config.checkpoint] = sharding.replicate(
        (jnp.asarray(task.images), jnp.asarray(task.labels)), mesh)
  return RunContext(config, method, train_cfg, model, trained, ds, task, epochs, workdir, evaluator,
              procedure, batch_size, *device_data[config.checkpoint], no_mask,
              checkpoints.Checkpoints(workdir), progress, mesh)


def budget_for(method: Method, train_cfg: training.TrainConfig, task: UnlearnTask,
               epochs: int) -> Budget:
  """The method's recipe resolved against the original training: None takes the
  original's batch, momentum or weight decay; a shared fine-tuning's rate becomes its
  schedule (compressed, original or constant) over the remain stream's steps."""
  batch_size = method.batch_size or train_cfg.batch_size
  momentum = train_cfg.momentum if method.momentum is None else method.momentum
  decay = train_cfg.weight_decay if method.weight_decay is None else method.weight_decay
  lr = method.lr
  if shares_finetuning(method):
    stream = task.remain if task.remain is not None else task.forget   # epochs 0 when none
    lr = finetuning.finetune_schedule(train_cfg.schedule, method.lr,
                                      steps_per_epoch=steps_per_epoch(len(stream), batch_size),
                                      compress_epochs=method.compress_epochs)
  elif isinstance(lr, str):
    raise ValueError(f"lr {lr!r} replays the original schedule over the shared fine-tuning's "
                     f"steps; {method.name} trains with its own procedure: give it a constant "
                     "rate (--lr 0.01).")
  return Budget(epochs, lr, batch_size, momentum=momentum, weight_decay=decay)
