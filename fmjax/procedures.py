"""Training as data: objectives, stages and procedures, the one thing the runner runs.

Every training in fmjax is a :class:`Procedure` run by the one epoch loop,
:class:`fmjax.runner.Runner`: the original's training
(:func:`fmjax.training.training_procedure`), the paper's fine-tuning and
Retrain (:func:`fmjax.finetuning.finetune_procedure`), the relearn readout,
and every successor's own training (SalUn trains on random labels, SCRUB
alternates ascent and descent on a distillation loss, NegGrad+ descends on
D_r while ascending on D_f, l1-sparse adds a decaying penalty). So all of
them share the batching, data order, keys, checkpoints per epoch, resume,
readouts and timings, and any compatible runs stack into one compiled
program (:func:`fmjax.runner.stack`).

A :class:`Procedure` is a list of :class:`Stage` s run in order in every epoch
(or in the epochs a stage names). A stage is one pass over a named data
stream (``'remain'``, ``'forget'``, ``'train'``; optionally with a second,
cycled ``pair`` stream whose next batch comes with every batch) minimising
one objective. An objective is a frozen dataclass (hashable: one compiled
step per objective and settings) called as::

    objective(model, params, model_state, batch, pair_batch, teacher, coef)
        -> (loss, (new_model_state, logits))

with ``batch`` the stage's batch (``{'image': [b, H, W, C], 'label': [b]}``),
``pair_batch`` the paired batch (or None), ``teacher`` the original
model's ``(params, model_state)`` (or None) and ``coef`` a per-epoch number
(e.g. l1-sparse's decaying weight). The student runs in training mode
(:func:`fmjax.steps.apply_train`: BatchNorm statistics updated by every
forward pass, in order), the teacher in inference mode
(:func:`teacher_logits`). A user's objective is any such callable.

The optimiser is :func:`fmjax.steps.sgd` (momentum, coupled weight decay) at
the procedure's rate; ``freeze`` (True = must not move) keeps entries EXACTLY
where they are (SalUn's non-salient weights, FisherMask's ``freeze_mask``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fmjax import sharding
from fmjax.steps import TrainState, apply_train, cross_entropy, sgd


def distill_kl(student_logits: jax.Array, teacher_logits: jax.Array,
               temperature: float, weight: jax.Array | None = None) -> jax.Array:
  """KL(teacher || student) at temperature T, times T^2, mean over the batch.

  The distillation loss of Hinton et al. as SCRUB uses it:
  ``T^2 / B * sum_b sum_k p_t log(p_t / p_s)`` with ``p = softmax(z / T)``.
  ``weight`` [B] (0 = padding, :mod:`fmjax.sharding`) makes the mean weighted.
  Shapes: [B, K], [B, K] -> [].
  """
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  log_pt = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature)
  kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return sharding.weighted_mean(kl, weight) * temperature**2


def l1_norm(params: Any) -> jax.Array:
  """sum_i |theta_i| over every leaf of ``params`` (a scalar)."""
  return sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))


def batch_cross_entropy(logits: jax.Array, batch: dict) -> jax.Array:
  """:func:`fmjax.steps.cross_entropy` of ``logits`` against the batch's labels, over
  its real examples."""
  return cross_entropy(logits, batch["label"], sharding.example_weight(batch))


def teacher_logits(model, teacher: tuple[Any, Any], images: jax.Array) -> jax.Array:
  """The fixed teacher ``(params, model_state)`` in inference mode, no gradient."""
  params, model_state = teacher
  return jax.lax.stop_gradient(model.apply({"params": params, **model_state}, images,
                                           train=False))


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
  """Cross-entropy on the batch's labels (given or random); ``+ coef * ||theta||_1``
  when ``l1`` (l1-sparse)."""
  l1: bool = False

  def __call__(self, model, params, model_state, batch, pair_batch, teacher, coef):
    del pair_batch, teacher
    logits, model_state = apply_train(model, params, model_state, batch)
    loss = batch_cross_entropy(logits, batch)
    if self.l1:
      loss = loss + coef * l1_norm(params)
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class NegGradPlusLoss:
  """``beta * CE(D_r batch) - (1 - beta) * CE(D_f batch)`` (paired stream;
  ``coef`` is beta). The remain batch goes through the network first."""

  def __call__(self, model, params, model_state, batch, pair_batch, teacher, coef):
    del teacher
    logits, model_state = apply_train(model, params, model_state, batch)
    forget_logits, model_state = apply_train(model, params, model_state, pair_batch)
    loss = (coef * batch_cross_entropy(logits, batch)
            - (1.0 - coef) * batch_cross_entropy(forget_logits, pair_batch))
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class ScrubMax:
  """SCRUB's max-step: minimise ``-KL(teacher || student)`` on a forget batch."""
  temperature: float

  def __call__(self, model, params, model_state, batch, pair_batch, teacher, coef):
    del pair_batch, coef
    logits, model_state = apply_train(model, params, model_state, batch)
    loss = -distill_kl(logits, teacher_logits(model, teacher, batch["image"]),
                       self.temperature, sharding.example_weight(batch))
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class ScrubMin:
  """SCRUB's min-step on a remain batch: ``ce_weight * CE + kl_weight * KL(teacher || student)``."""
  temperature: float
  ce_weight: float
  kl_weight: float

  def __call__(self, model, params, model_state, batch, pair_batch, teacher, coef):
    del pair_batch, coef
    logits, model_state = apply_train(model, params, model_state, batch)
    kl = distill_kl(logits, teacher_logits(model, teacher, batch["image"]), self.temperature,
                    sharding.example_weight(batch))
    loss = self.ce_weight * batch_cross_entropy(logits, batch) + self.kl_weight * kl
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One pass over a data stream, minimising ``objective``.

  Attributes:
    objective: see the module docstring.
    stream: the name of the index set the stage passes over, one of the
      streams the runner is given (:class:`fmjax.runner.Runner`): an
      unlearning run gives ``'remain'`` (the task's remain examples) and
      ``'forget'`` (D_f); the original's training gives ``'train'``.
    batch_size: examples per step of the stream.
    pair: a second stream whose next batch comes with every batch of
      ``stream``, cycled (NegGrad+: ``'forget'``), or None.
    pair_batch_size: examples of each paired batch.
    random_labels: the stream's examples carry a uniformly random WRONG
      label, drawn again every epoch from (seed, epoch, stage).
    epochs: the epochs (1-based) the stage runs in; None = every epoch.
    coef: a number or a function of the epoch (1-based) passed to the objective.
    last_batch: a ragged last batch is ``'fill'``-ed up from the start of the
      epoch's order (every step one compiled shape; fine-tuning and the
      procedures) or kept ``'short'`` (PyTorch's default; the original's
      training).
  """
  objective: Callable[..., Any]
  stream: str
  batch_size: int
  pair: str | None = None
  pair_batch_size: int | None = None
  random_labels: bool = False
  epochs: tuple[int, ...] | None = None
  coef: float | Callable[[int], float] = 0.0
  last_batch: Literal["fill", "short"] = "fill"

  def __post_init__(self):
    if not (isinstance(self.stream, str) and self.stream):
      raise ValueError(f"a stage's stream must name an index set (e.g. 'remain', 'forget'), "
                       f"got {self.stream!r}.")
    if self.batch_size < 1 or (self.pair is not None and not (self.pair_batch_size or 0) >= 1):
      raise ValueError(f"stage batch sizes must be >= 1 (and a stage with a pair stream "
                       f"needs pair_batch_size), got {self.batch_size}, "
                       f"{self.pair_batch_size}.")
    if self.last_batch not in ("fill", "short"):
      raise ValueError(f"a stage's last_batch must be 'fill' or 'short', got "
                       f"{self.last_batch!r}.")

  def runs_in(self, epoch: int) -> bool:
    return self.epochs is None or epoch in self.epochs

  def coef_at(self, epoch: int) -> float:
    return float(self.coef(epoch) if callable(self.coef) else self.coef)

  @property
  def streams(self) -> tuple[str, ...]:
    """The streams this stage reads."""
    return (self.stream,) if self.pair is None else (self.stream, self.pair)


@dataclasses.dataclass(frozen=True)
class Procedure:
  """A training procedure: what :class:`fmjax.runner.Runner` runs, epoch by epoch.

  The original's training, the paper's fine-tuning, Retrain, the relearn
  readout and every successor are procedures.

  Attributes:
    stages: run in this order in every epoch.
    lr: the learning rate, a number or an optax schedule over the run's
      optimiser steps (counted across epochs and stages from 0).
    momentum, weight_decay: the SGD's (:func:`fmjax.steps.sgd`).
    teacher: the objectives need the original model (SCRUB).
    info: the procedure's settings as recorded in the run's edit record.
  """
  stages: tuple[Stage, ...]
  lr: float | optax.Schedule
  momentum: float = 0.9
  weight_decay: float = 1e-4
  teacher: bool = False
  info: dict = dataclasses.field(default_factory=dict, compare=False)

  def __post_init__(self):
    if not self.stages:
      raise ValueError("a procedure needs at least one stage.")
    if not callable(self.lr) and not self.lr > 0:
      raise ValueError(f"a procedure's learning rate must be > 0, got {self.lr}.")
    if not (self.momentum >= 0 and self.weight_decay >= 0):
      raise ValueError(f"a procedure's momentum and weight decay must be >= 0, got "
                       f"{self.momentum}, {self.weight_decay}.")

  @property
  def streams(self) -> frozenset[str]:
    """Every stream a stage reads (a run must supply each, non-empty)."""
    return frozenset(n for stage in self.stages for n in stage.streams)

  def init(self, params: Any, model_state: Any) -> TrainState:
    """The state this procedure starts from: ``params`` with a fresh SGD state."""
    return TrainState(params, model_state,
                      sgd(momentum=self.momentum, weight_decay=self.weight_decay).init(params))


class Budget(NamedTuple):
  """What a run grants a method's own training.

  Attributes:
    epochs: epochs of the procedure (the config's, else the method's default).
    lr: the learning rate (a constant given in the config, else the method's
      published default).
    batch_size: the run's batch (the config's, else the training batch).
    momentum, weight_decay: the SGD's (the original training's).
  """
  epochs: int
  lr: float
  batch_size: int
  momentum: float = 0.9
  weight_decay: float = 1e-4

  def procedure(self, stages: tuple[Stage, ...], **kw: Any) -> Procedure:
    """A :class:`Procedure` of ``stages`` at this budget's rate and SGD."""
    return Procedure(stages, self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                     **kw)
