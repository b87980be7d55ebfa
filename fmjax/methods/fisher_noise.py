"""FisherNoise (Golatkar et al. 2020a, "Eternal Sunshine of the Spotless Net"):
add Gaussian noise shaped by the inverse Fisher of the remain set.

The paper's Equation 2, ``w = w* + (lambda sigma^2)^(1/4) h^(-1/4) eps``, is
the "Fisher forgetting" of Golatkar et al. with the Hessian replaced by the
diagonal Fisher ``h`` of D_r. The paper states that it sets the
hyper-parameters as Golatkar et al.; their released code's recipe (batch
size 1, BatchNorm in inference mode, the settings below), reproduced here,
draws ``w = mu + sqrt(var) * eps`` with

* ``h``: the TRUE Fisher (expectation over the model's predictive
  distribution), mean over D_r, BatchNorm in inference mode;
* ``var = alpha * clamp(1 / (h + 1e-8), max=1e3)`` (max 1e2 for the
  classifier layer), ``alpha = 1e-6`` in the paper's code;
* for kernels, ``var`` averaged over the input-channel axis (PyTorch's
  ``dim=1``; axis -2 of a Flax kernel), so every output unit has one
  variance per tap;
* for class removal, the removed classes' classifier weights and bias get
  mean 0 and variance 1e-4;
* ``var`` x10 for the classifier layer and for 1-D parameters (biases,
  BatchNorm).

So the noise's standard deviation scales as ``h^(-1/2)`` (their code), not
the ``h^(-1/4)`` of Equation 2 as printed. No fine-tuning follows by default,
as in the paper's figures.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from fmjax.fisher import accumulate_fisher_diag, make_fisher_diag
from fmjax.methods import _channels
from fmjax.methods.base import FineTuned, FisherScoring, register
from fmjax.task import Edit, UnlearnTask, subset_seed

APPLY_KWARGS = {"train": False}


def noise_variance(fisher: dict, params: dict, classifier: tuple[str, ...], *,
                   alpha: float, forget_classes=None) -> tuple[dict, dict]:
  """The recipe's ``(mean, variance)`` pytrees for every parameter (see module doc)."""
  flat_f = jax.tree_util.tree_flatten_with_path(fisher)[0]
  treedef = jax.tree_util.tree_structure(params)
  means, variances = [], []
  for (key_path, h), p in zip(flat_f, jax.tree_util.tree_leaves(params), strict=True):
    names = tuple(str(getattr(k, "key", k)) for k in key_path)
    is_classifier = names[:-1] == tuple(classifier)
    var = 1.0 / (h + 1e-8)
    var = jnp.minimum(var, 1e2 if is_classifier else 1e3)
    var = alpha * var
    if p.ndim > 1:
      var = jnp.broadcast_to(var.mean(axis=-2, keepdims=True), p.shape)
    mu = p
    if is_classifier and forget_classes is not None:
      cols = jnp.asarray(list(forget_classes))
      mu = mu.at[..., cols].set(0.0)
      var = var.at[..., cols].set(1e-4)
    if is_classifier or p.ndim == 1:
      var = var * 10.0
    means.append(mu)
    variances.append(var)
  return (jax.tree_util.tree_unflatten(treedef, means),
          jax.tree_util.tree_unflatten(treedef, variances))


@functools.partial(jax.jit, static_argnames=("classifier", "alpha", "forget_classes"))
def _sample(h, params, key, *, classifier, alpha, forget_classes):
  """``mu + sqrt(var) * eps`` and ``var``, in one compiled program."""
  mu, var = noise_variance(h, params, classifier, alpha=alpha, forget_classes=forget_classes)
  leaves, treedef = jax.tree_util.tree_flatten(mu)
  # One draw for all parameters (one RNG program: per-leaf draws compile slowly on CPU).
  eps = jax.random.normal(key, (sum(m.size for m in leaves),), jnp.float32)
  noisy, offset = [], 0
  for m, v in zip(leaves, jax.tree_util.tree_leaves(var), strict=True):
    e = eps[offset:offset + m.size].reshape(m.shape).astype(m.dtype)
    noisy.append(m + jnp.sqrt(v) * e)
    offset += m.size
  return jax.tree_util.tree_unflatten(treedef, noisy), var


def fisher_noise(model, params, model_state, task: UnlearnTask, settings: FisherNoise,
                 key: jax.Array) -> Edit:
  """Samples the noisy model. Needs the remain set (its Fisher shapes the noise)."""
  start = time.perf_counter()
  seed_key, noise_key = jax.random.split(key)
  seed = subset_seed(seed_key)
  fd = make_fisher_diag(model, model_state, kind="true",
                        chunk_size=settings.fisher_block(task.image_shape), devices=task.devices)
  remain = task.subsample(task.remain, settings.score_limit, seed)
  h = accumulate_fisher_diag(fd, params, task.batches(
      remain, settings.score_batch_size, desc="true Fisher of the remain set",
      shard=False)).mean()
  jax.block_until_ready(h)
  scored = time.perf_counter()
  classifier = _channels.classifier_path(model, {"params": params, **model_state},
                                         task.image_shape, APPLY_KWARGS)
  new, var = _sample(h, params, noise_key, classifier=classifier, alpha=settings.alpha,
                     forget_classes=task.forget_classes)
  jax.block_until_ready(new)
  info = {"classifier": "/".join(classifier),
          "mean_std": float(np.mean([float(jnp.sqrt(v).mean())
                                     for v in jax.tree_util.tree_leaves(var)]))}
  return Edit(new, model_state, None, info,
              {"score": scored - start, "noise": time.perf_counter() - scored})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class FisherNoise(FineTuned, FisherScoring):
  """Golatkar et al.'s Fisher noise; no fine-tuning by default (the paper's figures).

  Attributes:
    alpha: the noise scale alpha (Golatkar et al.'s recipe; the paper's code
      uses 1e-6).
  """
  name: ClassVar[str] = "fisher_noise"
  tags: ClassVar[tuple[str, ...]] = ("paper",)
  limits: ClassVar[dict[str, str]] = {"alpha": ">0"}
  epochs: int | None = 0
  alpha: float = 1e-6

  def edit(self, model, params, model_state, task, key):
    return fisher_noise(model, params, model_state, task, self, key)
