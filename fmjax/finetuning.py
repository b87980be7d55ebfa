"""The one fine-tuning routine every method shares (and Retrain's training loop).

After a method edits the model, fine-tuning runs SGD on the remain data with
the original optimiser (momentum, weight decay) and a fresh optimiser state.
The learning rate is, by default, the original schedule compressed into
S = 5 epochs and held at its last rate afterwards (Section 3.4,
:func:`fmjax.schedules.compressed_schedule`); a constant rate serves the
learning-rate ablation (Section 4.5), and the uncompressed schedule serves
Retrain.

Masked weights start at zero; by default fine-tuning may move them again (the
paper's procedure). With ``freeze=mask`` they stay exactly where they are:
their decayed gradient is zeroed before momentum sees it and their final
update is zeroed too, so neither momentum nor weight decay can move them
and their momentum stays zero.

The optimiser is the original one (SGD, momentum, coupled weight decay) with
the learning rate applied as a number per step, so a single compiled step
serves every method, schedule and seed of a process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmjax import _compiled, schedules, sharding, training


def finetune_optimizer(lr: Any = 1.0, freeze: Any = None, *, momentum: float,
                       weight_decay: float) -> optax.GradientTransformation:
  """The training optimiser (PyTorch's SGD: weight decay added to the gradient,
  momentum, then ``-lr``) with ``lr`` a plain or traced number, so one compiled
  step serves every schedule (and every run of a process with the same model).

  ``freeze`` (a mask, or None) zeroes the gradient plus weight decay of its
  entries before momentum sees it (so their momentum stays zero), and their
  update after. The state's structure does not depend on ``lr`` or ``freeze``:
  every stage but momentum is stateless.
  """
  return optax.chain(optax.add_decayed_weights(weight_decay), _zero_where(freeze),
                     optax.trace(decay=momentum), optax.scale(-lr), _zero_where(freeze))


def _zero_where(mask: Any) -> optax.GradientTransformation:
  """Stateless: updates of the entries where ``mask`` is True become exactly 0."""
  def update(updates, state, params=None):
    del params
    if mask is None:
      return updates, state
    return jax.tree.map(lambda m, u: jnp.where(m, jnp.zeros_like(u), u), mask, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _step_fn(model: nn.Module, momentum: float, weight_decay: float, augment: bool,
             mesh: Any = None) -> Callable:
  """The pure fine-tuning step ``step(state, images, labels, idx, key, lr, freeze, mean,
  std)``: :func:`fmjax.training.train_step` with the optimiser built around the traced
  ``lr`` and ``freeze``; with a mesh the batch is split across its devices."""

  def step(state, images, labels, idx, key, lr, freeze, mean, std):
    batch = training.gather_batch(images, labels, idx, key, mean, std, augment=augment,
                                  mesh=mesh)
    optimizer = finetune_optimizer(lr, freeze, momentum=momentum, weight_decay=weight_decay)
    return training.train_step(model, optimizer, state, batch)

  return step


def _compiled_step(model: nn.Module, momentum: float, weight_decay: float, augment: bool,
                   mesh: Any = None):
  """One jitted fine-tuning step per (model, optimiser settings, augmentation, mesh)."""
  return _compiled.compiled(
      ("finetune_step", model, momentum, weight_decay, augment, mesh),
      lambda: (jax.jit(_step_fn(model, momentum, weight_decay, augment, mesh)),
               finetune_optimizer(momentum=momentum, weight_decay=weight_decay)))


def _compiled_stacked_step(model: nn.Module, momentum: float, weight_decay: float,
                           augment: bool, mesh: Any = None):
  """The same step ``vmap``-ed over K stacked units, one program for all of them:
  ``step(states [K], images, labels, idx [K, B], keys [K], lrs [K], freezes [K] | None,
  mean, std)``; images, labels, mean and std are shared."""
  single = _step_fn(model, momentum, weight_decay, augment, mesh)

  def stacked(states, images, labels, idx, keys, lrs, freezes, mean, std):
    def one(state, i, key, lr, freeze):
      return single(state, images, labels, i, key, lr, freeze, mean, std)
    return jax.vmap(one)(states, idx, keys, lrs, freezes)

  return _compiled.compiled(("stacked_finetune_step", model, momentum, weight_decay, augment,
                             mesh), lambda: jax.jit(stacked))


def finetune_schedule(original: schedules.StepSchedule, mode: str | float, *,
                      steps_per_epoch: int, compress_epochs: float) -> optax.Schedule:
  """The learning rate of fine-tuning.

  Args:
    original: the schedule the model was trained with.
    mode: ``'compressed'`` (the paper): the original schedule replayed in
      ``compress_epochs`` epochs, then its last rate; ``'original'``: the
      original schedule itself (Retrain); a number: that constant rate.
    steps_per_epoch: optimiser steps per fine-tuning epoch.
    compress_epochs: S.
  """
  if isinstance(mode, int | float) and not isinstance(mode, bool):
    if not mode > 0:
      raise ValueError(f"a constant fine-tuning learning rate must be positive, got {mode}.")
    return optax.constant_schedule(float(mode))
  if mode == "compressed":
    return schedules.compressed_schedule(original, compress_epochs, steps_per_epoch)
  if mode == "original":
    return schedules.step_schedule(original, steps_per_epoch)
  raise ValueError(f"fine-tuning lr must be 'compressed', 'original' or a positive number, "
                   f"got {mode!r}.")


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Optimiser steps of one epoch (a ragged last batch is filled up, see Finetuner)."""
  return math.ceil(num_examples / min(batch_size, num_examples))


def step_indices(order: np.ndarray, step: int, batch_size: int) -> np.ndarray:
  """The examples of ``step`` in an epoch ``order``; a ragged last batch is filled up
  from the start of the order, so every step has one compiled shape."""
  idx = order[step * batch_size:(step + 1) * batch_size]
  if len(idx) < batch_size:
    idx = np.concatenate([idx, order[:batch_size - len(idx)]])
  return idx


class Finetuner:
  """Runs fine-tuning epochs on a set of training indices.

  Every step is the same compiled program (shared by all Finetuners of one
  process with the same model and optimiser settings); the learning rate of
  step t is ``lr(t)``, evaluated on the host.

  Args:
    model: the classifier.
    images, labels: the training set (uint8 images [N, ...], labels [N]),
      moved to the device once.
    indices: the examples to fine-tune on.
    mean, std: normalisation statistics.
    lr: the learning rate: a number or an optax schedule over steps.
    momentum, weight_decay: the original optimiser's.
    freeze: a mask whose entries stay exactly zero, or None.
    batch_size: examples per step.
    augment: random crop and flip.
    seed: epoch orders and augmentation keys derive from (seed, epoch), so a
      resumed run repeats exactly the epochs an uninterrupted run would.
    mesh: split every batch across these devices (:mod:`fmjax.sharding`;
      ``images``, ``labels`` and the state should be replicated on it), or
      None for one device.
  """

  def __init__(self, model: nn.Module, images: Any, labels: Any, indices: np.ndarray, *,
               mean: Any, std: Any, lr: float | optax.Schedule, momentum: float,
               weight_decay: float, batch_size: int, augment: bool, seed: int,
               freeze: Any = None, mesh: Any = None):
    if len(indices) == 0:
      raise ValueError("fine-tuning needs at least one training example.")
    self.model, self.augment = model, bool(augment)
    self.momentum, self.weight_decay = float(momentum), float(weight_decay)
    self.indices = np.asarray(indices)
    self.batch_size = int(min(batch_size, len(self.indices)))
    self.steps_per_epoch = steps_per_epoch(len(self.indices), batch_size)
    self.lr = lr if callable(lr) else optax.constant_schedule(float(lr))
    self.seed = seed
    self.images, self.labels = images, labels
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self.freeze = freeze
    self.mesh = mesh
    self.step, self.optimizer = _compiled_step(model, float(momentum), float(weight_decay),
                                               bool(augment), mesh)
    self.key = jax.random.key(seed)

  def init(self, params: Any, model_state: Any) -> training.TrainState:
    """A fresh optimiser state for ``params``."""
    return training.TrainState(params, model_state, self.optimizer.init(params))

  def steps(self, epoch: int) -> int:
    """Optimiser steps of ``epoch`` (the same in every epoch)."""
    del epoch
    return self.steps_per_epoch

  def last_lr(self, epoch: int) -> float:
    """The learning rate of the last step of ``epoch``."""
    return float(self.lr(epoch * self.steps_per_epoch - 1))

  def order(self, epoch: int) -> np.ndarray:
    """The examples of ``epoch`` in their (seed, epoch)-determined order."""
    return self.indices[np.random.default_rng([self.seed, epoch]).permutation(
        len(self.indices))]

  def step_inputs(self, order: np.ndarray, epoch: int, i: int):
    """``(idx [B], key, lr)`` of step ``i`` of ``epoch``."""
    t = (epoch - 1) * self.steps_per_epoch + i
    return (step_indices(order, i, self.batch_size), jax.random.fold_in(self.key, t),
            np.float32(self.lr(t)))

  def epoch(self, state: training.TrainState, epoch: int,
            on_step: Callable[[], None] | None = None) -> tuple[training.TrainState, dict]:
    """One pass over the indices in a (seed, epoch)-determined order.

    Returns the new state and ``{'loss', 'accuracy'}`` (epoch means) with
    ``'step_losses'``, the batch loss of every step before its update.
    """
    order = self.order(epoch)
    sums = {"loss": 0.0, "accuracy": 0.0}
    step_losses = []
    for i in range(self.steps_per_epoch):
      idx, key, lr = self.step_inputs(order, epoch, i)
      state, m = self.step(state, self.images, self.labels, idx, key, lr, self.freeze,
                           self.mean, self.std)
      sums = {k: sums[k] + m[k] for k in sums}
      step_losses.append(m["loss"])
      if on_step is not None:
        on_step()
    out = {k: float(v) / self.steps_per_epoch for k, v in sums.items()}
    out["step_losses"] = [float(x) for x in jax.device_get(step_losses)]
    return state, out


def stack_key(ft: Finetuner) -> tuple:
  """Finetuners with equal keys can run as one stacked program (:class:`StackedFinetuner`):
  the same model, optimiser settings, augmentation, mesh, batch, steps per epoch,
  training images (the same device array) and whether they freeze weights."""
  return (ft.model, ft.momentum, ft.weight_decay, ft.augment, ft.mesh, ft.batch_size,
          ft.steps_per_epoch, id(ft.images), id(ft.labels), ft.freeze is None)


class StackedFinetuner:
  """K :class:`Finetuner` s run as ONE compiled program, their states stacked along a
  leading axis (``vmap`` over units).

  Each unit keeps its own indices, (seed, epoch) data order, augmentation keys,
  learning rate per step and frozen mask, so each computes what it computes
  alone, up to the order of floating-point sums inside the batched program.
  On an accelerator that one unit alone leaves idle (a small network), K
  units cost about the time of one.

  Raises:
    ValueError: the finetuners differ in anything but those per-unit inputs
      (see :func:`stack_key`).
  """

  def __init__(self, finetuners: list[Finetuner]):
    if not finetuners:
      raise ValueError("StackedFinetuner needs at least one Finetuner.")
    keys = {stack_key(ft) for ft in finetuners}
    if len(keys) != 1:
      raise ValueError("these fine-tunings cannot share one program: they differ in model, "
                       "optimiser settings, batch, steps per epoch, training images or "
                       "freezing (fmjax.finetuning.stack_key); run them separately.")
    self.units = list(finetuners)
    first = finetuners[0]
    self.steps_per_epoch = first.steps_per_epoch
    self.step = _compiled_stacked_step(first.model, first.momentum, first.weight_decay,
                                       first.augment, first.mesh)
    self.freezes = (None if first.freeze is None else
                    jax.tree.map(lambda *m: jnp.stack(m), *[ft.freeze for ft in self.units]))

  def steps(self, epoch: int) -> int:
    del epoch
    return self.steps_per_epoch

  def epoch(self, states: list[training.TrainState], epoch: int,
            on_step: Callable[[], None] | None = None
            ) -> tuple[list[training.TrainState], list[dict]]:
    """One epoch of every unit; returns their states and metrics as
    :meth:`Finetuner.epoch` does for each."""
    first = self.units[0]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)
    orders = [ft.order(epoch) for ft in self.units]
    sums = {"loss": 0.0, "accuracy": 0.0}   # [K] on the device, summed as each unit sums
    step_losses = []
    for i in range(self.steps_per_epoch):
      inputs = [ft.step_inputs(order, epoch, i) for ft, order in zip(self.units, orders,
                                                                     strict=True)]
      idx = np.stack([x[0] for x in inputs])
      keys = jnp.stack([x[1] for x in inputs])
      lrs = np.asarray([x[2] for x in inputs], np.float32)
      stacked, m = self.step(stacked, first.images, first.labels, idx, keys, lrs,
                             self.freezes, first.mean, first.std)
      step_losses.append(m["loss"])
      sums = {k: sums[k] + m[k] for k in sums}
      if on_step is not None:
        on_step()
    losses = np.asarray(jax.device_get(step_losses))   # [steps, K]
    sums = jax.device_get(sums)
    out = [{"loss": float(sums["loss"][k]) / self.steps_per_epoch,
            "accuracy": float(sums["accuracy"][k]) / self.steps_per_epoch,
            "step_losses": [float(x) for x in losses[:, k]]} for k in range(len(self.units))]
    return [jax.tree.map(lambda x, k=k: x[k], stacked) for k in range(len(self.units))], out


def _compiled_procedure_step(model: nn.Module, objective: Any, paired: bool, momentum: float,
                             weight_decay: float, augment: bool, mesh: Any = None):
  """One jitted step of a procedure's stage per (model, objective, optimiser settings,
  mesh)."""

  def step(state, teacher, images, labels, idx, forget_idx, key, lr, coef, freeze, mean, std):
    k1, k2 = jax.random.split(key)
    batch = training.gather_batch(images, labels, idx, k1, mean, std, augment=augment,
                                  mesh=mesh)
    forget_batch = (training.gather_batch(images, labels, forget_idx, k2, mean, std,
                                          augment=augment, mesh=mesh) if paired else None)
    optimizer = finetune_optimizer(lr, freeze, momentum=momentum, weight_decay=weight_decay)

    def loss_fn(params):
      return objective(model, params, state.model_state, batch, forget_batch, teacher, coef)

    return training.optimizer_step(optimizer, state, loss_fn, batch["label"],
                                   sharding.example_weight(batch))

  return _compiled.compiled(
      ("procedure_step", model, objective, paired, momentum, weight_decay, augment, mesh),
      lambda: jax.jit(step))


def random_wrong_labels(labels: np.ndarray, num_classes: int, seed: Any) -> np.ndarray:
  """A uniformly random label different from each of ``labels`` ([n] -> [n]):
  ``(y + u) mod K`` with ``u`` uniform on 1..K-1."""
  shift = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))
  return ((np.asarray(labels) + shift) % num_classes).astype(np.asarray(labels).dtype)


class ProcedureRunner:
  """Runs a method's own :class:`fmjax.procedures.Procedure`, epoch by epoch.

  The counterpart of :class:`Finetuner` for methods that bring their own
  training, with the same interface (``init``, ``epoch``, ``steps``) so the
  one routine of :mod:`fmjax.unlearning` drives both. Data orders, random
  labels and augmentation keys derive from (seed, epoch, stage), so a resumed
  run repeats exactly the epochs an uninterrupted run would.

  Args:
    model: the classifier.
    procedure: the stages, learning rate and whether a teacher is needed.
    images, labels: the training set on the device (uint8 images, labels).
    remain, forget: the examples of the 'remain' and 'forget' streams.
    num_classes: for random labels.
    mean, std: normalisation statistics.
    momentum, weight_decay: the training's optimiser settings.
    augment: random crop and flip.
    seed: the run's seed.
    freeze: True where parameters must not move, or None.
    teacher: the original model's ``(params, model_state)`` when the
      procedure needs one.
    mesh: split every batch across these devices, or None (see :class:`Finetuner`).
  """

  def __init__(self, model: nn.Module, procedure: Any, images: Any, labels: Any, *,
               remain: np.ndarray | None, forget: np.ndarray, num_classes: int, mean: Any,
               std: Any, momentum: float, weight_decay: float, augment: bool, seed: int,
               freeze: Any = None, teacher: Any = None, mesh: Any = None):
    needs_remain = any(s.stream in ("remain", "paired") for s in procedure.stages)
    if needs_remain and (remain is None or len(remain) == 0):
      raise ValueError("this method trains on remain data and the run has none (no_remain).")
    if procedure.teacher and teacher is None:
      raise ValueError("this procedure needs the original model as its teacher.")
    self.model, self.procedure = model, procedure
    self.images, self.labels = images, labels
    self.host_labels = sharding.to_host(labels)
    self.remain = None if remain is None else np.asarray(remain)
    self.forget = np.asarray(forget)
    self.num_classes = num_classes
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self.momentum, self.weight_decay, self.augment = float(momentum), float(weight_decay), bool(
        augment)
    self.seed, self.freeze, self.teacher, self.mesh = seed, freeze, teacher, mesh
    self.key = jax.random.key(seed)
    self.optimizer = finetune_optimizer(momentum=self.momentum, weight_decay=self.weight_decay)

  def last_lr(self, epoch: int) -> float:
    """The learning rate of the last step of ``epoch`` (constant)."""
    del epoch
    return float(self.procedure.lr)

  def _indices(self, stage) -> np.ndarray:
    return self.forget if stage.stream == "forget" else self.remain

  def _steps(self, stage) -> int:
    return steps_per_epoch(len(self._indices(stage)), stage.batch_size)

  def steps(self, epoch: int) -> int:
    """Optimiser steps of ``epoch``."""
    return sum(self._steps(s) for s in self.procedure.stages if s.runs_in(epoch))

  def init(self, params: Any, model_state: Any) -> training.TrainState:
    """A fresh optimiser state for ``params``."""
    return training.TrainState(params, model_state, self.optimizer.init(params))

  def _labels(self, epoch: int, stage_index: int):
    """The device labels with the forget examples relabelled at random (this epoch's draw)."""
    wrong = random_wrong_labels(self.host_labels[self.forget], self.num_classes,
                                [self.seed, epoch, stage_index, 1])
    return self.labels.at[jnp.asarray(self.forget)].set(jnp.asarray(wrong, self.labels.dtype))

  def epoch(self, state: training.TrainState, epoch: int,
            on_step: Callable[[], None] | None = None) -> tuple[training.TrainState, dict]:
    """The stages that run in ``epoch``, in order.

    Returns the new state and ``{'loss', 'accuracy'}`` (means over the epoch's
    steps) with ``'step_losses'``.
    """
    sums = {"loss": 0.0, "accuracy": 0.0}
    step_losses = []
    t = 0
    for s_i, stage in enumerate(self.procedure.stages):
      if not stage.runs_in(epoch):
        continue
      step = _compiled_procedure_step(self.model, stage.objective, stage.stream == "paired",
                                      self.momentum, self.weight_decay, self.augment,
                                      self.mesh)
      rng = np.random.default_rng([self.seed, epoch, s_i])
      pool = self._indices(stage)
      order = pool[rng.permutation(len(pool))]
      batch = int(min(stage.batch_size, len(order)))
      labels = self._labels(epoch, s_i) if stage.random_labels else self.labels
      if stage.stream == "paired":
        f_order = self.forget[rng.permutation(len(self.forget))]
        f_batch = int(min(stage.forget_batch_size, len(f_order)))
      coef = np.float32(stage.coef_at(epoch))
      lr = np.float32(self.procedure.lr)
      for i in range(self._steps(stage)):
        idx = step_indices(order, i, batch)
        f_idx = None
        if stage.stream == "paired":   # the forget stream cycles
          f_idx = np.take(f_order, np.arange(i * f_batch, (i + 1) * f_batch), mode="wrap")
        key = jax.random.fold_in(jax.random.fold_in(self.key, epoch), t)
        state, m = step(state, self.teacher, self.images, labels, idx, f_idx, key, lr, coef,
                        self.freeze, self.mean, self.std)
        sums = {k: sums[k] + m[k] for k in sums}
        step_losses.append(m["loss"])
        t += 1
        if on_step is not None:
          on_step()
    out = {k: float(v) / max(t, 1) for k, v in sums.items()}
    out["step_losses"] = [float(x) for x in jax.device_get(step_losses)]
    return state, out
