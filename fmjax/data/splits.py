"""The splits the experiments need, as pure functions of (labels, settings, seed).

All return index arrays into the dataset (sorted, int64), never copies of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class ForgetSplit(NamedTuple):
  """Indices of the examples to forget and to keep."""
  forget: np.ndarray
  remain: np.ndarray


class OutlierSplit(NamedTuple):
  """Training labels with outliers, and which examples are the outliers.

  Attributes:
    labels: the training labels after shuffling the outliers' labels.
    forget: indices of the outliers (the forget set).
    remain: all other indices.
    true_labels: the outliers' original labels (for the "noise accuracy").
  """
  labels: np.ndarray
  forget: np.ndarray
  remain: np.ndarray
  true_labels: np.ndarray


def _check_classes(labels: np.ndarray, classes: Sequence[int]) -> list[int]:
  classes = [int(c) for c in np.atleast_1d(classes)]
  present = set(np.unique(labels).tolist())
  missing = [c for c in classes if c not in present]
  if not classes or missing:
    raise ValueError(f"forget class(es) {missing or classes} not in the data; the labels hold "
                     f"classes {sorted(present)[:20]}{' ...' if len(present) > 20 else ''}.")
  return classes


def class_split(labels: np.ndarray, classes: int | Sequence[int]) -> ForgetSplit:
  """Forget every example of ``classes`` (one class or several); keep the rest."""
  labels = np.asarray(labels)
  classes = _check_classes(labels, classes)
  in_forget = np.isin(labels, classes)
  return ForgetSplit(np.flatnonzero(in_forget), np.flatnonzero(~in_forget))


def outlier_split(labels: np.ndarray, fraction: float, seed: int) -> OutlierSplit:
  """Picks ``round(fraction * N)`` random examples and shuffles labels among them.

  The paper's Section 4 "Remove Outliers": labels are permuted WITHIN the
  chosen group, so the class counts stay the same; an example may keep its
  own label by chance. The forget set is exactly the chosen examples.
  """
  labels = np.asarray(labels)
  if not 0.0 < float(fraction) < 1.0:
    raise ValueError(f"outlier fraction must lie in (0, 1), got {fraction!r} "
                     "(the paper uses 0.1, 0.3 and 0.5).")
  rng = np.random.default_rng(seed)
  n = round(float(fraction) * labels.size)
  if n < 2:
    raise ValueError(f"outlier fraction {fraction} of {labels.size} examples selects {n}; "
                     "shuffling labels needs at least 2.")
  chosen = np.sort(rng.choice(labels.size, n, replace=False))
  noisy = labels.copy()
  noisy[chosen] = labels[chosen][rng.permutation(n)]
  remain = np.setdiff1d(np.arange(labels.size), chosen)
  return OutlierSplit(noisy, chosen, remain, labels[chosen].copy())


def limited_subset(indices: np.ndarray, k: int, seed: int) -> np.ndarray:
  """``k`` indices drawn without replacement from ``indices`` (sorted)."""
  indices = np.asarray(indices)
  if not 0 < k <= indices.size:
    raise ValueError(f"cannot draw k={k} examples from a set of {indices.size}; choose "
                     f"1 <= k <= {indices.size}.")
  return np.sort(np.random.default_rng(seed).choice(indices, k, replace=False))



def random_split(num_examples: int, fraction: float, seed: int) -> ForgetSplit:
  """Forget ``round(fraction * N)`` examples drawn uniformly across classes (seeded).

  The unlearning protocol's random-subset forgetting (10% in SalUn's and
  l1-sparse's tables).
  """
  if not 0.0 < float(fraction) < 1.0:
    raise ValueError(f"forget fraction must lie in (0, 1), got {fraction!r} (the protocol "
                     "uses 0.1).")
  n = round(float(fraction) * num_examples)
  if not 0 < n < num_examples:
    raise ValueError(f"forget fraction {fraction} of {num_examples} examples selects {n}; "
                     "choose a fraction that leaves both sets non-empty.")
  chosen = np.sort(np.random.default_rng(seed).choice(num_examples, n, replace=False))
  return ForgetSplit(chosen, np.setdiff1d(np.arange(num_examples), chosen))


def salun_holdout(labels: np.ndarray, seed: int, fraction: float = 0.1) -> ForgetSplit:
  """SalUn's validation hold-out (OPTML-Group/Unlearn-Saliency, ``Classification/
  dataset.py``): ``int(fraction * n_c)`` examples of each class c, drawn class by class
  in class order with ONE ``np.random.RandomState(seed)``, ``rng.choice(class_indices,
  k, replace=False)``; the rest, in ascending index order, is the training set.

  Returns ``ForgetSplit(forget=held-out indices, remain=training indices)``, both sorted
  (the hold-out is a set; its draw order does not matter downstream).
  """
  labels = np.asarray(labels)
  rng = np.random.RandomState(seed)
  held = [rng.choice(np.flatnonzero(labels == c), int(fraction * np.sum(labels == c)),
                     replace=False) for c in range(int(labels.max()) + 1)]
  held = np.sort(np.concatenate(held)).astype(np.int64)
  return ForgetSplit(held, np.setdiff1d(np.arange(labels.size), held))


def salun_forget(labels: np.ndarray, seed: int, count: int,
                 classes: Sequence[int] | None = None) -> ForgetSplit:
  """SalUn's forget set over a training set (``replace_class`` in its ``dataset.py``):
  ``np.random.RandomState(seed).choice(candidates, count, replace=False)``, the candidates
  being every index (random forgetting, ``classes`` None) or those of ``classes``
  (class-wise: ``count`` = the class size takes all of it). Its scripts pass ``seed - 1``
  of the run's seed (default 2, so RandomState(1)).
  """
  labels = np.asarray(labels)
  candidates = (np.arange(labels.size) if classes is None
                else np.flatnonzero(np.isin(labels, _check_classes(labels, classes))))
  if not 0 < count <= candidates.size:
    raise ValueError(f"cannot forget {count} of {candidates.size} candidate examples; choose "
                     f"1 <= count <= {candidates.size}.")
  chosen = np.sort(np.random.RandomState(seed).choice(candidates, count, replace=False))
  return ForgetSplit(chosen.astype(np.int64), np.setdiff1d(np.arange(labels.size), chosen))
