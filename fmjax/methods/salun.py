"""SalUn: saliency unlearning (Fan, Liu, Zhang, Wong, Wei and Liu, ICLR 2024).

1. Weight saliency (the paper's Eq. 5): ``m_S = 1(|grad_theta l_f(theta_o; D_f)| >= gamma)``,
   the magnitude of the gradient of the forget loss at the ORIGINAL weights,
   with one global threshold gamma chosen so that the top
   ``salun_fraction`` (default 50%, the paper's choice) of all weights are
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

Defaults: 10 epochs at lr 0.1 (SalUn's README, ResNet-18 on CIFAR-10); the
paper tunes the rate per setting, which ``experiments`` can sweep.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from fmjax import masks
from fmjax.methods._gradients import mean_loss_grad
from fmjax.methods.random_label import random_label_procedure
from fmjax.procedures import Budget, Procedure
from fmjax.task import Edit, MethodSettings, UnlearnTask


def saliency_mask(grad, fraction: float):
  """The salient weights: the top ``fraction`` of ``|grad|``, one global
  threshold (True = salient, trained)."""
  return masks.top_fraction_mask(jax.tree.map(jnp.abs, grad), fraction)


def salun(model, params, model_state, task: UnlearnTask, settings: MethodSettings,
          key: jax.Array) -> Edit:
  """Scores saliency; the weights are unchanged, the non-salient ones frozen."""
  del key
  start = time.perf_counter()
  grad = mean_loss_grad(model, params, model_state,
                        task.batches(task.forget, settings.score_batch_size,
                                     desc="SalUn saliency"))
  salient = saliency_mask(grad, settings.salun_fraction)
  freeze = jax.tree.map(jnp.logical_not, salient)
  jax.block_until_ready(freeze)
  n = sum(s.size for s in jax.tree.leaves(salient))
  info = {"salient_fraction": sum(int(s.sum()) for s in jax.tree.leaves(salient)) / n}
  return Edit(params, model_state, None, info, {"score": time.perf_counter() - start},
              freeze=freeze)


def salun_procedure(task: UnlearnTask, settings: MethodSettings, budget: Budget) -> Procedure:
  """Random-label unlearning (the non-salient weights are frozen by the edit)."""
  proc = random_label_procedure(task, settings, budget)
  return dataclasses.replace(proc, info={**proc.info,
                                         "salun_fraction": settings.salun_fraction})
