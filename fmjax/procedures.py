"""A method's own training: objectives, stages and the procedure the shared routine runs.

The paper's methods edit the weights and then all share one fine-tuning
(cross-entropy on D_r, :class:`fmjax.finetuning.Finetuner`). The paper's
successors ARE training procedures: SalUn trains on random labels, SCRUB
alternates ascent and descent on a distillation loss, NegGrad+ descends on
D_r while ascending on D_f, l1-sparse adds a decaying penalty. A method
describes such a procedure as data, a :class:`Procedure`, and the shared
routine (:class:`fmjax.finetuning.ProcedureRunner` inside
:func:`fmjax.unlearning.unlearn`) runs it with the same batching, data
order, checkpoints per epoch, resume, readouts after every epoch and phase
timings as every other method.

A :class:`Procedure` is a list of :class:`Stage` s run in order in every epoch
(or in the epochs a stage names). A stage is one pass over a data stream
(``'remain'``, ``'forget'``, or ``'paired'``: every remain batch together with
the next batch of a cycled forget stream) minimising one objective. An
objective is a frozen dataclass (hashable: one compiled step per objective
and settings) called as::

    objective(model, params, model_state, batch, forget_batch, teacher, coef)
        -> (loss, (new_model_state, logits))

with ``batch`` the stage's batch (``{'image': [b, H, W, C], 'label': [b]}``),
``forget_batch`` the paired forget batch (or None), ``teacher`` the original
model's ``(params, model_state)`` (or None) and ``coef`` a per-epoch number
(e.g. l1-sparse's decaying weight). The student runs in training mode
(BatchNorm statistics updated by every forward pass, in order), the teacher
in inference mode.

The optimiser is the training's SGD (momentum, coupled weight decay) at the
procedure's constant learning rate; ``freeze`` (True = must not move) keeps
entries EXACTLY where they are: their gradient plus weight decay is zeroed
before momentum sees it (their momentum stays zero), and their update after
(SalUn's non-salient weights).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from fmjax import sharding
from fmjax.training import cross_entropy

Stream = Literal["remain", "forget", "paired"]


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


def _apply(model, params, model_state, batch):
  """The student in training mode: logits and the updated non-parameter collections
  (BatchNorm's statistics over the real examples of a padded batch)."""
  logits, updates = model.apply({"params": params, **model_state}, batch["image"],
                                train=sharding.bn_mode(batch), mutable=list(model_state))
  return logits, {**model_state, **updates}


def _ce(logits, batch):
  return cross_entropy(logits, batch["label"], sharding.example_weight(batch))


def _teacher_logits(model, teacher, images):
  params, model_state = teacher
  return jax.lax.stop_gradient(model.apply({"params": params, **model_state}, images,
                                           train=False))


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
  """Cross-entropy on the batch's labels (given or random); ``+ coef * ||theta||_1``
  when ``l1`` (l1-sparse)."""
  l1: bool = False

  def __call__(self, model, params, model_state, batch, forget_batch, teacher, coef):
    del forget_batch, teacher
    logits, model_state = _apply(model, params, model_state, batch)
    loss = _ce(logits, batch)
    if self.l1:
      loss = loss + coef * l1_norm(params)
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class NegGradPlus:
  """``beta * CE(D_r batch) - (1 - beta) * CE(D_f batch)`` (paired stream;
  ``coef`` is beta). The remain batch goes through the network first."""

  def __call__(self, model, params, model_state, batch, forget_batch, teacher, coef):
    del teacher
    logits, model_state = _apply(model, params, model_state, batch)
    forget_logits, model_state = _apply(model, params, model_state, forget_batch)
    loss = coef * _ce(logits, batch) - (1.0 - coef) * _ce(forget_logits, forget_batch)
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class ScrubMax:
  """SCRUB's max-step: minimise ``-KL(teacher || student)`` on a forget batch."""
  temperature: float

  def __call__(self, model, params, model_state, batch, forget_batch, teacher, coef):
    del forget_batch, coef
    logits, model_state = _apply(model, params, model_state, batch)
    loss = -distill_kl(logits, _teacher_logits(model, teacher, batch["image"]),
                       self.temperature, sharding.example_weight(batch))
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class ScrubMin:
  """SCRUB's min-step on a remain batch: ``ce_weight * CE + kl_weight * KL(teacher || student)``."""
  temperature: float
  ce_weight: float
  kl_weight: float

  def __call__(self, model, params, model_state, batch, forget_batch, teacher, coef):
    del forget_batch, coef
    logits, model_state = _apply(model, params, model_state, batch)
    kl = distill_kl(logits, _teacher_logits(model, teacher, batch["image"]), self.temperature,
                    sharding.example_weight(batch))
    loss = self.ce_weight * _ce(logits, batch) + self.kl_weight * kl
    return loss, (model_state, logits)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One pass over a data stream, minimising ``objective``.

  Attributes:
    objective: see the module docstring.
    stream: 'remain' (the task's remain examples), 'forget' (D_f) or 'paired'
      (remain batches, each with the next batch of a cycled forget stream).
    batch_size: examples per step of the stream ('paired': of the remain batch).
    forget_batch_size: 'paired': examples of each forget batch.
    random_labels: forget examples carry a uniformly random WRONG label,
      drawn again every epoch from (seed, epoch).
    epochs: the epochs (1-based) the stage runs in; None = every epoch.
    coef: a number or a function of the epoch (1-based) passed to the objective.
  """
  objective: Callable[..., Any]
  stream: Stream
  batch_size: int
  forget_batch_size: int | None = None
  random_labels: bool = False
  epochs: tuple[int, ...] | None = None
  coef: float | Callable[[int], float] = 0.0

  def __post_init__(self):
    if self.stream not in ("remain", "forget", "paired"):
      raise ValueError(f"a stage's stream must be 'remain', 'forget' or 'paired', got "
                       f"{self.stream!r}.")
    if self.batch_size < 1 or (self.stream == "paired" and not self.forget_batch_size):
      raise ValueError(f"stage batch sizes must be >= 1 (and a 'paired' stage needs "
                       f"forget_batch_size), got {self.batch_size}, {self.forget_batch_size}.")

  def runs_in(self, epoch: int) -> bool:
    return self.epochs is None or epoch in self.epochs

  def coef_at(self, epoch: int) -> float:
    return float(self.coef(epoch) if callable(self.coef) else self.coef)


@dataclasses.dataclass(frozen=True)
class Procedure:
  """A method's own training, run by the shared routine.

  Attributes:
    stages: run in this order in every epoch.
    lr: the constant learning rate of every step.
    teacher: the objectives need the original model (SCRUB).
    info: the procedure's settings as recorded in the run's edit record.
  """
  stages: tuple[Stage, ...]
  lr: float
  teacher: bool = False
  info: dict = dataclasses.field(default_factory=dict, compare=False)

  def __post_init__(self):
    if not self.stages:
      raise ValueError("a procedure needs at least one stage.")
    if not self.lr > 0:
      raise ValueError(f"a procedure's learning rate must be > 0, got {self.lr}.")


class Budget(NamedTuple):
  """What a run grants a method's own training.

  Attributes:
    epochs: epochs of the procedure (the config's, else the method's default).
    lr: the learning rate (a constant given in the config, else the method's
      published default).
    batch_size: the run's batch (the config's, else the training batch).
  """
  epochs: int
  lr: float
  batch_size: int
