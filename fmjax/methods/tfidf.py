"""TF-IDF (Wang et al. 2022, "Federated Unlearning via Class-Discriminative
Pruning", WWW '22): prune the channels most discriminative of the removed class.

Channels are words and classes are documents. For each conv layer with C
output channels and a K-class model:

* ``a[j, c]``: the mean over class-c examples of channel j's spatially
  averaged ``relu`` of the conv output, BEFORE BatchNorm (as that paper; the
  paper we reproduce notes that BatchNorm's information is then untouched).
* Term frequency: ``TF[j, c] = a[j, c] / sum_j' a[j', c]`` (within the layer).
* Inverse document frequency: ``IDF[j] = log(K / (1 + #{c : a[j, c] >=
  mean_c' a[j, c']}))``, classes where the channel fires at least at its
  average count as documents containing the word.
* Score of channel j for the removed class u: ``TF[j, u] * IDF[j]`` (summed
  over the removed classes when there are several).

These follow the definitions of Wang et al.'s Section 4 ("class-discriminative
channels": TF, IDF and their product) and the authors' public code; the
equation numbers of the published version could not be checked offline here.
Their variant has an optional per-layer "balance coefficient" (off by
default there), not reproduced. Channels are ranked globally across layers
(as their threshold over all layers) and R counts parameters as in
ActivationMask. Class removal only; it needs examples of the other classes
(remain data) to compare against.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import jax
import numpy as np

from fmjax import sharding
from fmjax.methods import _channels
from fmjax.methods.base import MaskMethod, Scoring, register
from fmjax.task import Edit, UnlearnTask, subset_seed

APPLY_KWARGS = {"train": False}


def tfidf_scores(class_means: np.ndarray, forget_classes) -> np.ndarray:
  """TF-IDF scores of one layer's channels.

  Args:
    class_means: ``a`` [C channels, K classes] (0 for a class without examples).
    forget_classes: the removed classes.

  Returns:
    [C] scores, higher = more specific to the removed classes.
  """
  a = np.asarray(class_means, np.float64)
  col = a.sum(0, keepdims=True)
  tf = np.divide(a, col, out=np.zeros_like(a), where=col > 0)
  docs = (a >= a.mean(1, keepdims=True)).sum(1)
  idf = np.log(a.shape[1] / (docs + 1.0))
  return sum(tf[:, c] for c in forget_classes) * idf


def class_channel_means(model, params, model_state, task: UnlearnTask, indices: np.ndarray,
                        batch_size: int) -> dict[str, np.ndarray]:
  """``{conv path: a [C, K]}``: per-class means of the pre-BN channel activations."""
  variables = {"params": params, **model_state}
  means = _channels.make_channel_means(model, APPLY_KWARGS, where="pre")
  sums: dict[str, np.ndarray] = {}
  counts = np.zeros(task.num_classes)
  for batch in task.batches(indices, batch_size, desc="channel means"):
    labels = sharding.real_rows(batch["label"], batch)
    onehot = np.eye(task.num_classes)[labels]            # [b, K]
    counts += onehot.sum(0)
    for k, v in sharding.real_rows(means(variables, batch["image"]), batch).items():
      sums[k] = sums.get(k, 0.0) + np.asarray(v, np.float64).T @ onehot   # [C, K]
  safe = np.where(counts > 0, counts, 1.0)
  return {k: v / safe for k, v in sums.items()}


def tfidf(model, params, model_state, task: UnlearnTask, settings: TFIDF,
          key: jax.Array) -> Edit:
  start = time.perf_counter()
  seed = subset_seed(key)
  remain = task.subsample(task.remain, settings.score_limit, seed)
  indices = np.sort(np.concatenate([task.forget, remain]))
  a = class_channel_means(model, params, model_state, task, indices, settings.score_batch_size)
  scores = {k: tfidf_scores(v, task.forget_classes) for k, v in a.items()}
  return _channels.masked_channels_edit(model, params, model_state, task.image_shape,
                                       scores, settings.mask_ratio(),
                                       {"score": time.perf_counter() - start})


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class TFIDF(MaskMethod, Scoring):
  """Wang et al.'s class-discriminative channel pruning (class removal only)."""
  name: ClassVar[str] = "tfidf"
  classes_only: ClassVar[bool] = True
  tags: ClassVar[tuple[str, ...]] = ("paper",)

  def edit(self, model, params, model_state, task, key):
    return tfidf(model, params, model_state, task, self, key)
