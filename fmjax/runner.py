"""The one epoch loop: a :class:`fmjax.procedures.Procedure` over named index streams.

:class:`Runner` runs every training of fmjax, epoch by epoch: the original's
training, the paper's fine-tuning, Retrain, the relearn readout and each
successor's procedure. :func:`stack` runs K compatible runners (any
procedure, Retrain included) as ONE compiled program, their states stacked
along a leading axis (``vmap`` over units), each unit computing what it
computes alone.

Determinism (what makes a resumed run repeat an uninterrupted one, and a
stacked unit equal its run alone): everything random derives from the
runner's ``seed`` and ``key`` and the step's place in the run.

* Data order: stage ``i`` of epoch ``e`` passes over its stream in the order
  ``np.random.default_rng([seed, e])`` draws (``[seed, e, i]`` for i >= 1);
  a paired stream's order is the same generator's next permutation.
* Augmentation: step ``t`` (counted from 0 across epochs and stages) uses
  ``fold_in(key, t)``; a step with a paired batch splits it in two.
* Random labels: redrawn per (seed, epoch, stage).
* Learning rate: the procedure's schedule at step ``t``, evaluated on the host
  and passed as a number, so one compiled step serves every schedule.

A ragged last batch is filled up from the start of the order (``'fill'``) or
kept short (``'short'``), as the stage says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fmjax import _compiled, sharding
from fmjax.procedures import Procedure, Stage
from fmjax.steps import TrainState, gather_batch, optimizer_step, sgd

OnStep = Callable[[dict], None]


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Optimiser steps of one pass over ``num_examples`` at ``batch_size`` (a batch larger
  than the set becomes the set)."""
  return math.ceil(num_examples / min(batch_size, num_examples))


def step_indices(order: np.ndarray, step: int, batch_size: int, last_batch: str = "fill"
                 ) -> np.ndarray:
  """The examples of ``step`` in an epoch ``order``. A ragged last batch is filled up
  from the start of the order (``'fill'``: every step one compiled shape) or kept
  ``'short'``."""
  idx = order[step * batch_size:(step + 1) * batch_size]
  if last_batch == "fill" and len(idx) < batch_size:
    idx = np.concatenate([idx, order[:batch_size - len(idx)]])
  return idx


def random_wrong_labels(labels: np.ndarray, num_classes: int, seed: Any) -> np.ndarray:
  """A uniformly random label different from each of ``labels`` ([n] -> [n]):
  ``(y + u) mod K`` with ``u`` uniform on 1..K-1."""
  shift = np.random.default_rng(seed).integers(1, num_classes, size=len(labels))
  return ((np.asarray(labels) + shift) % num_classes).astype(np.asarray(labels).dtype)


def _step_fn(model: nn.Module, objective: Any, paired: bool, momentum: float,
             weight_decay: float, augment: bool, mesh: Any) -> Callable:
  """The pure step ``step(state, teacher, images, labels, idx, pair_idx, key, lr, coef,
  freeze, mean, std) -> (state, {'loss', 'accuracy'})``."""

  def step(state, teacher, images, labels, idx, pair_idx, key, lr, coef, freeze, mean, std):
    k1, k2 = jax.random.split(key) if paired else (key, None)
    batch = gather_batch(images, labels, idx, k1, mean, std, augment=augment, mesh=mesh)
    pair_batch = (gather_batch(images, labels, pair_idx, k2, mean, std, augment=augment,
                               mesh=mesh) if paired else None)
    optimizer = sgd(lr, momentum=momentum, weight_decay=weight_decay, freeze=freeze)

    def loss_fn(params):
      return objective(model, params, state.model_state, batch, pair_batch, teacher, coef)

    return optimizer_step(optimizer, state, loss_fn, batch["label"],
                          sharding.example_weight(batch))

  return step


def make_step(model: nn.Module, stage: Stage, procedure: Procedure, *, augment: bool,
              mesh: Any = None, stacked: tuple[int | None, int | None] | None = None
              ) -> Callable:
  """The jitted step of ``stage``: one program per (model, objective, pairing, SGD
  settings, augmentation, mesh), shared by every runner of a process.

  ``stacked=(teacher_axis, labels_axis)`` gives the same step ``vmap``-ped over K
  units: states, indices, keys, rates, coefficients and frozen sets carry a
  leading unit axis; the teacher and the labels do where their axis is 0 and are
  shared where it is None; images and normalisation are shared.
  """
  key = ("step", model, stage.objective, stage.pair is not None, procedure.momentum,
         procedure.weight_decay, bool(augment), mesh, stacked)

  def build():
    single = _step_fn(model, stage.objective, stage.pair is not None, procedure.momentum,
                      procedure.weight_decay, bool(augment), mesh)
    if stacked is None:
      return jax.jit(single)
    teacher_axis, labels_axis = stacked
    return jax.jit(jax.vmap(single, in_axes=(0, teacher_axis, None, labels_axis, 0, 0, 0, 0,
                                             0, 0, None, None)))

  return _compiled.compiled(key, build)


class _Plan(NamedTuple):
  """A stage's fixed shape: its pools, batches and steps per epoch."""
  pool: np.ndarray
  batch: int
  steps: int
  pair_pool: np.ndarray | None
  pair_batch: int


class StepInputs(NamedTuple):
  """What one step of one unit takes besides the state."""
  stage: int
  idx: np.ndarray
  pair_idx: np.ndarray | None
  key: jax.Array
  lr: np.float32
  coef: np.float32
  labels: Any


class Runner:
  """Runs a :class:`fmjax.procedures.Procedure` epoch by epoch.

  Args:
    model: the classifier.
    procedure: the stages, rate and SGD settings.
    images, labels: the training set on the device (uint8 images [N, ...],
      labels [N]), moved there once by the caller.
    streams: the index sets the stages name, e.g. ``{'remain': ..., 'forget':
      ...}``; every stream the procedure reads must be here and non-empty.
    mean, std: normalisation statistics.
    seed: data orders and random labels derive from (seed, epoch, stage).
    key: the augmentation key (default ``jax.random.key(seed)``).
    num_classes: for random labels.
    augment: random crop and flip.
    freeze: True where parameters must not move (:func:`fmjax.steps.sgd`), or None.
    teacher: the original model's ``(params, model_state)`` when the procedure
      needs one.
    mesh: split every batch across these devices (:mod:`fmjax.sharding`;
      images, labels and the state should be replicated on it), or None.

  Raises:
    ValueError: a stream the procedure reads is missing or empty, or the
      procedure needs a teacher (or random labels need ``num_classes``) and
      none is given.
  """

  def __init__(self, model: nn.Module, procedure: Procedure, images: Any, labels: Any,
               streams: Mapping[str, np.ndarray | None], *, mean: Any, std: Any, seed: int,
               key: jax.Array | None = None, num_classes: int | None = None,
               augment: bool = False, freeze: Any = None, teacher: Any = None,
               mesh: Any = None):
    missing = sorted(n for n in procedure.streams
                     if streams.get(n) is None or len(streams[n]) == 0)
    if missing:
      raise ValueError(f"this procedure trains on the {' and '.join(map(repr, missing))} "
                       f"data and the run has none{' (no_remain)' if 'remain' in missing else ''}"
                       ".")
    if procedure.teacher and teacher is None:
      raise ValueError("this procedure needs the original model as its teacher.")
    if any(s.random_labels for s in procedure.stages) and not num_classes:
      raise ValueError("a stage with random labels needs num_classes.")
    self.model, self.procedure, self.augment, self.mesh = model, procedure, bool(augment), mesh
    self.images, self.labels = images, labels
    self.mean = jnp.asarray(mean, jnp.float32)
    self.std = jnp.asarray(std, jnp.float32)
    self.seed, self.freeze, self.teacher, self.num_classes = seed, freeze, teacher, num_classes
    self.key = jax.random.key(seed) if key is None else key
    self.lr = (procedure.lr if callable(procedure.lr)
               else optax.constant_schedule(float(procedure.lr)))
    self.plans = [self._plan(s, streams) for s in procedure.stages]
    self.step_fns = [make_step(model, s, procedure, augment=augment, mesh=mesh)
                     for s in procedure.stages]
    self._host_labels = None

  @staticmethod
  def _plan(stage: Stage, streams: Mapping[str, np.ndarray | None]) -> _Plan:
    pool = np.asarray(streams[stage.stream])
    batch = int(min(stage.batch_size, len(pool)))
    pair_pool = None if stage.pair is None else np.asarray(streams[stage.pair])
    pair_batch = 0 if pair_pool is None else int(min(stage.pair_batch_size, len(pair_pool)))
    return _Plan(pool, batch, steps_per_epoch(len(pool), stage.batch_size), pair_pool,
                 pair_batch)

  def init(self, params: Any, model_state: Any) -> TrainState:
    """A fresh optimiser state for ``params``."""
    return self.procedure.init(params, model_state)

  def steps(self, epoch: int) -> int:
    """Optimiser steps of ``epoch``."""
    return sum(p.steps for s, p in zip(self.procedure.stages, self.plans, strict=True)
               if s.runs_in(epoch))

  def first_step(self, epoch: int) -> int:
    """The run's step count before ``epoch`` (1-based)."""
    return sum(self.steps(e) for e in range(1, epoch))

  def last_lr(self, epoch: int) -> float:
    """The learning rate of the last step of ``epoch``."""
    return float(self.lr(self.first_step(epoch + 1) - 1))

  def _stage_labels(self, epoch: int, i: int, pool: np.ndarray) -> Any:
    """The device labels with ``pool`` relabelled at random (this epoch's draw)."""
    if self._host_labels is None:
      self._host_labels = sharding.to_host(self.labels)
    wrong = random_wrong_labels(self._host_labels[pool], self.num_classes,
                                [self.seed, epoch, i, 1])
    return self.labels.at[jnp.asarray(pool)].set(jnp.asarray(wrong, self.labels.dtype))

  def inputs(self, epoch: int):
    """The per-step :class:`StepInputs` of ``epoch``, in order."""
    t = self.first_step(epoch)
    for i, (stage, plan) in enumerate(zip(self.procedure.stages, self.plans, strict=True)):
      if not stage.runs_in(epoch):
        continue
      rng = np.random.default_rng([self.seed, epoch] if i == 0 else [self.seed, epoch, i])
      order = plan.pool[rng.permutation(len(plan.pool))]
      pair_order = (None if plan.pair_pool is None
                    else plan.pair_pool[rng.permutation(len(plan.pair_pool))])
      labels = self._stage_labels(epoch, i, plan.pool) if stage.random_labels else self.labels
      coef = np.float32(stage.coef_at(epoch))
      for j in range(plan.steps):
        pair_idx = (None if pair_order is None else np.take(
            pair_order, np.arange(j * plan.pair_batch, (j + 1) * plan.pair_batch),
            mode="wrap"))   # the paired stream cycles
        yield StepInputs(i, step_indices(order, j, plan.batch, stage.last_batch), pair_idx,
                         jax.random.fold_in(self.key, t), np.float32(self.lr(t)), coef,
                         labels)
        t += 1

  def epoch(self, state: TrainState, epoch: int, on_step: OnStep | None = None
            ) -> tuple[TrainState, dict]:
    """The stages that run in ``epoch``, in order.

    ``on_step(metrics)`` is called after every step. Returns the new state and
    ``{'loss', 'accuracy'}`` (means over the examples of the epoch's steps)
    with ``'step_losses'``, the batch loss of every step before its update.
    """
    sums, seen, losses = {"loss": 0.0, "accuracy": 0.0}, 0, []
    for x in self.inputs(epoch):
      state, m = self.step_fns[x.stage](state, self.teacher, self.images, x.labels, x.idx,
                                        x.pair_idx, x.key, x.lr, x.coef, self.freeze,
                                        self.mean, self.std)
      sums = {k: sums[k] + m[k] * len(x.idx) for k in sums}
      seen += len(x.idx)
      losses.append(m["loss"])
      if on_step is not None:
        on_step(m)
    return state, _epoch_metrics(sums, seen, losses)


def _epoch_metrics(sums: dict, seen: int, losses: list) -> dict:
  out = {k: float(v) / max(seen, 1) for k, v in sums.items()}
  out["step_losses"] = [float(x) for x in jax.device_get(losses)]
  return out


def stack_key(runner: Runner) -> tuple:
  """Runners with equal keys can run as one stacked program (:func:`stack`): the same
  model, stages (objectives, streams, batches, steps, epochs; not their coefficients),
  SGD settings, augmentation, mesh, training set (the same device arrays), and whether
  they freeze weights and have a teacher."""
  stages = tuple((s.objective, s.stream, s.pair, s.batch_size, s.pair_batch_size,
                  s.random_labels, s.epochs, s.last_batch, p.batch, p.steps, p.pair_batch)
                 for s, p in zip(runner.procedure.stages, runner.plans, strict=True))
  return (runner.model, stages, runner.procedure.momentum, runner.procedure.weight_decay,
          runner.augment, runner.mesh, id(runner.images), id(runner.labels),
          runner.freeze is None, runner.teacher is None)


def _stack(trees: list) -> Any:
  return jax.tree.map(lambda *x: jnp.stack(x), *trees)


class Stacked:
  """K :class:`Runner` s as ONE compiled program (see :func:`stack`)."""

  def __init__(self, runners: list[Runner]):
    if not runners:
      raise ValueError("stack needs at least one Runner.")
    if len({stack_key(r) for r in runners}) != 1:
      raise ValueError("these runs cannot share one program: they differ in model, stages, "
                       "batches, steps per epoch, SGD settings, training images, freezing or "
                       "teacher (fmjax.runner.stack_key); run them separately.")
    self.units = list(runners)
    first = runners[0]
    shared_teacher = all(r.teacher is first.teacher for r in runners)
    self.teacher_axis = None if shared_teacher else 0
    self.teachers = first.teacher if shared_teacher else _stack([r.teacher for r in runners])
    self.freezes = None if first.freeze is None else _stack([r.freeze for r in runners])
    self.step_fns = [make_step(first.model, s, first.procedure, augment=first.augment,
                               mesh=first.mesh,
                               stacked=(self.teacher_axis, 0 if s.random_labels else None))
                     for s in first.procedure.stages]

  def steps(self, epoch: int) -> int:
    return self.units[0].steps(epoch)

  def epoch(self, states: list[TrainState], epoch: int, on_step: OnStep | None = None
            ) -> tuple[list[TrainState], list[dict]]:
    """One epoch of every unit; returns their states and metrics as :meth:`Runner.epoch`
    does for each."""
    first, k = self.units[0], len(self.units)
    stacked = _stack(states)
    sums, seen, losses = {"loss": 0.0, "accuracy": 0.0}, 0, []   # sums: [K] on the device
    labels_of: dict[int, Any] = {}
    for xs in zip(*[r.inputs(epoch) for r in self.units], strict=True):
      s_i = xs[0].stage
      if s_i not in labels_of:   # one stacked copy per stage of the epoch
        random = first.procedure.stages[s_i].random_labels
        labels_of[s_i] = jnp.stack([x.labels for x in xs]) if random else first.labels
      pair_idx = None if xs[0].pair_idx is None else np.stack([x.pair_idx for x in xs])
      stacked, m = self.step_fns[s_i](
          stacked, self.teachers, first.images, labels_of[s_i], np.stack([x.idx for x in xs]),
          pair_idx, jnp.stack([x.key for x in xs]), np.asarray([x.lr for x in xs]),
          np.asarray([x.coef for x in xs]), self.freezes, first.mean, first.std)
      sums = {key: sums[key] + m[key] * len(xs[0].idx) for key in sums}
      seen += len(xs[0].idx)
      losses.append(m["loss"])
      if on_step is not None:
        on_step(m)
    sums = jax.device_get(sums)
    per_step = np.asarray(jax.device_get(losses)).reshape(len(losses), k)
    out = [_epoch_metrics({key: v[u] for key, v in sums.items()}, seen, list(per_step[:, u]))
           for u in range(k)]
    return [jax.tree.map(lambda x, u=u: x[u], stacked) for u in range(k)], out


def stack(runners: list[Runner]) -> Stacked:
  """K runners as ONE compiled program, their states stacked along a leading axis.

  Any procedure stacks (fine-tuning, Retrain, every successor) as long as the
  runners agree on :func:`stack_key`. Each unit keeps its own streams' indices,
  (seed, epoch) orders, keys, rates, coefficients, random labels, frozen set
  and teacher, so each computes what it computes alone, up to the order of
  floating-point sums inside the batched program.

  Raises:
    ValueError: the runners differ in anything but those per-unit inputs.
  """
  return Stacked(runners)
