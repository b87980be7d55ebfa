"""SalUn: saliency unlearning (Fan, Liu, Zhang, Wong, Wei and Liu, ICLR 2024).

1. Weight saliency (the paper's Eq. 5): ``m_S = 1(|grad_theta l_f(theta_o; D_f)| >= gamma)``,
   the magnitude of the gradient of the forget loss at the ORIGINAL weights,
   with one global threshold gamma chosen so that the top
   ``fraction`` (default 50%, the paper's choice) of all weights are
   salient. fmjax takes the gradient of the mean cross-entropy over all of
   D_f in inference mode (BatchNorm with running statistics, as the code's
   ``model.eval()``). The public code instead sums per-batch gradients while
   TAKING SGD steps on ``-loss`` between batches, so later batches are scored
   at moved weights; fmjax follows the paper (all gradients at theta_o).
2. Random-label unlearning (Eq. 7) of the salient weights only:
   :mod:`fmjax.methods.random_label`'s procedure, with the non-salient
   weights frozen EXACTLY: their gradient is zeroed before weight decay and
   momentum see it and their update after, so neither the weights nor their
   momentum move (the newer public code restores them after every step and
   zeroes their momentum, to the same effect).

Recipe (its authors' code, ``Classification/arg_parser.py``, and the README's
command for ResNet-18 on CIFAR-10, random 10%): the top 50% of weights, 10
epochs at lr 0.013, batch 256, SGD momentum 0.9, weight decay 5e-4. The
paper tunes the rate per setting, which ``experiments`` can sweep.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import jax
import jax.numpy as jnp

from fmjax import masks
from fmjax.methods._gradients import mean_loss_grad
from fmjax.methods.base import register
from fmjax.methods.random_label import RandomLabel
from fmjax.procedures import Budget, Procedure
from fmjax.task import Edit, UnlearnTask


def saliency_mask(grad, fraction: float):
  """The salient weights: the top ``fraction`` of ``|grad|``, one global
  threshold (True = salient, trained)."""
  return masks.top_fraction_mask(jax.tree.map(jnp.abs, grad), fraction)


def salun(model, params, model_state, task: UnlearnTask, settings: SalUn,
          key: jax.Array) -> Edit:
  """Scores saliency; the weights are unchanged, the non-salient ones frozen."""
  del key
  start = time.perf_counter()
  grad = mean_loss_grad(model, params, model_state,
                        task.batches(task.forget, settings.score_batch_size,
                                     desc="SalUn saliency"))
  salient = saliency_mask(grad, settings.fraction)
  freeze = jax.tree.map(jnp.logical_not, salient)
  jax.block_until_ready(freeze)
  n = sum(s.size for s in jax.tree.leaves(salient))
  info = {"salient_fraction": sum(int(s.sum()) for s in jax.tree.leaves(salient)) / n}
  return Edit(params, model_state, None, info, {"score": time.perf_counter() - start},
              freeze=freeze)


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SalUn(RandomLabel):
  """Random labels on the most salient weights only (the others frozen exactly).

  Attributes:
    fraction: the fraction of the weights trained (the most salient).
    score_batch_size: examples per batch of the saliency gradient.
  """
  name: ClassVar[str] = "salun"
  tags: ClassVar[tuple[str, ...]] = ("successor",)
  limits: ClassVar[dict[str, str]] = {"fraction": "(0,1]", "score_batch_size": ">=1"}
  fraction: float = 0.5
  score_batch_size: int = 256

  def edit(self, model, params, model_state, task, key):
    return salun(model, params, model_state, task, self, key)

  def procedure(self, task: UnlearnTask, budget: Budget) -> Procedure:
    proc = super().procedure(task, budget)
    return dataclasses.replace(proc, info={**proc.info, "fraction": self.fraction})
