"""What every unlearning method sees, and what it returns.

:class:`UnlearnTask` (the data views: forget, remain, test) and :class:`Edit` (a
method's result). They sit below both :mod:`fmjax.methods`, which consumes them, and
:mod:`fmjax.readouts`, which evaluates on the same task, so neither layer reaches
into the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fmjax import _progress, sharding
from fmjax.data.preprocess import normalize


@dataclasses.dataclass(frozen=True)
class UnlearnTask:
  """The data of one unlearning request, as index views into the training set.

  Attributes:
    images: training images, uint8 [N, H, W, C] (never copied per view).
    labels: training labels AS THE MODEL WAS TRAINED ON THEM, int [N] (for
      outlier deletion these hold the shuffled labels).
    forget: indices of the forget set D_f (non-empty).
    remain: indices of the remain data the method may use (all of D_r, or K
      of its examples in the limited-data setting), or None when no remain
      data is available (the paper's Section 4.3).
    test_images, test_labels: the test set.
    num_classes: number of classes of the classifier.
    mean, std: per-channel normalisation statistics (model inputs are
      ``normalize(images, mean, std)``).
    forget_classes: the removed classes for class removal, else None.
    true_labels: for outlier deletion, the forget examples' original labels
      (aligned with ``forget``), else None.
    progress: progress bars of the methods' scoring passes (None: only on a
      terminal). Changes nothing else.
    mesh: the devices the scoring passes split their batches across (a
      :class:`jax.sharding.Mesh`, :mod:`fmjax.sharding`), or None for one
      device. Changes results only in the order of floating-point sums.
  """
  images: np.ndarray
  labels: np.ndarray
  forget: np.ndarray
  remain: np.ndarray | None
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  mean: Any
  std: Any
  forget_classes: tuple[int, ...] | None = None
  true_labels: np.ndarray | None = None
  progress: bool | None = dataclasses.field(default=None, compare=False)
  mesh: Any = dataclasses.field(default=None, compare=False)

  def __post_init__(self):
    if len(self.forget) == 0:
      raise ValueError("the forget set is empty: there is nothing to unlearn. Check the forget "
                       "class (does the training set hold any example of it?) or the outlier "
                       "fraction.")
    if self.remain is not None and len(self.remain) == 0:
      raise ValueError("the remain set is empty; pass remain=None for the 'forget data only' "
                       "setting.")
    if self.true_labels is not None and len(self.true_labels) != len(self.forget):
      raise ValueError(f"true_labels has {len(self.true_labels)} entries for a forget set of "
                       f"{len(self.forget)}.")

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self.images.shape[1:])

  @property
  def setting(self) -> str:
    """'class' (full-class removal), 'outliers' (mislabelled points) or
    'random' (a random subset across classes)."""
    if self.forget_classes is not None:
      return "class"
    return "outliers" if self.true_labels is not None else "random"

  @property
  def devices(self) -> Any:
    """What the Fisher passes take as ``devices``: the mesh, or 1."""
    return 1 if self.mesh is None else self.mesh

  def batches(self, indices: np.ndarray, batch_size: int, *, labels: np.ndarray | None = None,
              desc: str | None = None, shard: bool = True) -> Iterator[dict]:
    """Normalised float batches ``{'image': [b, H, W, C], 'label': [b]}`` of ``indices``.

    ``labels`` overrides the labels (aligned with ``indices``); ``desc`` names
    a progress bar over the batches (see ``progress``). With a ``mesh`` (and
    ``shard``) each batch is split across its devices and, when ``b`` does not
    divide by their count, padded with zero-weight examples: it then carries
    ``'weight'`` [b'] (:func:`fmjax.sharding.host_batch`); consumers weight
    their sums and cut per-example outputs with :func:`fmjax.sharding.real_rows`.
    The Fisher passes take unsharded batches (``shard=False``) and place
    them themselves.
    """
    mean, std = jnp.asarray(self.mean), jnp.asarray(self.std)
    mesh = self.mesh if shard else None

    def gen():
      for i in range(0, len(indices), batch_size):
        idx = indices[i:i + batch_size]
        y = self.labels[idx] if labels is None else labels[i:i + batch_size]
        if mesh is None:
          yield {"image": normalize(jnp.asarray(self.images[idx]), mean, std),
                 "label": jnp.asarray(y, jnp.int32)}
        else:
          batch = sharding.host_batch({"image": self.images[idx],
                                       "label": np.asarray(y, np.int32)}, mesh)
          yield {**batch, "image": normalize(batch["image"], mean, std)}

    return _progress.iterate(gen(), -(-len(indices) // batch_size), desc, self.progress)

  def subsample(self, indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, drawn without replacement (sorted)."""
    if limit is None or limit >= len(indices):
      return indices
    return np.sort(np.random.default_rng(seed).choice(indices, limit, replace=False))


def subset_seed(key) -> int:
  """A host-side seed for a method's data subsets, derived from its PRNG key."""
  return int(jax.random.randint(key, (), 0, 2**31 - 1))


class Edit(NamedTuple):
  """What a method returns before any fine-tuning.

  Attributes:
    params, model_state: the edited model.
    mask: the boolean mask applied (True = zeroed), or None.
    info: method-specific facts worth recording (JSON-serialisable).
    seconds: wall time of the method's phases, e.g. ``{'score': .., 'mask': ..}``.
    freeze: entries the method's own training must not move (True = frozen;
      SalUn's non-salient weights), or None.
  """
  params: Any
  model_state: Any
  mask: Any
  info: dict
  seconds: dict
  freeze: Any = None
