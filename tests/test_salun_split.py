"""SalUn's CIFAR-10 split and forget sets, regenerated index for index.

The rule, as SalUn's released code (OPTML-Group/Unlearn-Saliency,
``Classification/dataset.py``) states it: one ``RandomState(seed)`` draws a tenth of each
class, class by class, as the validation hold-out; the training set is
``list(set(range(N)) - set(held))``; the forget set is
``RandomState(seed - 1).choice(candidates, count, replace=False)`` over the training set's
positions (random forgetting: all of them; class-wise: the class's). The reference below
re-states that rule step by step in plain NumPy and Python sets; fmjax's functions must
give the same indices.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fmjax import data, training
from fmjax.run import build
from fmjax.run.config import UnlearnConfig


def cifar_like_labels(n_per_class=5000, classes=10, seed=0):
  """50,000 labels, 5,000 per class, in a shuffled order (as CIFAR-10's training set)."""
  return np.random.RandomState(seed).permutation(np.repeat(np.arange(classes), n_per_class))


def reference(labels, seed, count, forget_class=None):
  """SalUn's rule, step by step: (training indices in its order, forget positions)."""
  rng = np.random.RandomState(seed)
  held = []
  for c in range(labels.max() + 1):
    idx = np.where(labels == c)[0]
    held.append(rng.choice(idx, int(0.1 * len(idx)), replace=False))
  held = np.hstack(held)
  train_idx = list(set(range(len(labels))) - set(held))   # the order a Python set gives
  train_labels = labels[train_idx]
  if forget_class is None:
    candidates = np.flatnonzero(np.ones_like(train_labels))
  else:
    candidates = np.flatnonzero(train_labels == forget_class)
  forget = np.random.RandomState(seed - 1).choice(candidates, size=count, replace=False)
  return np.asarray(train_idx), forget


@pytest.mark.parametrize("seed, count, forget_class", [(2, 4500, None), (2, 22500, None),
                                                       (3, 4500, None), (2, 4500, 0)])
def test_fmjax_regenerates_saluns_split_and_forget_sets(seed, count, forget_class):
  labels = cifar_like_labels()
  want_train, want_forget = reference(labels, seed, count, forget_class)
  split = data.salun_holdout(labels, seed)
  assert len(split.forget) == 5000 and len(split.remain) == 45000
  # The set difference comes out ascending: positions in the training set are the same.
  np.testing.assert_array_equal(split.remain, want_train)
  got = data.salun_forget(labels[split.remain], seed - 1, count,
                          None if forget_class is None else (forget_class,))
  np.testing.assert_array_equal(got.forget, np.sort(want_forget))
  assert len(got.forget) + len(got.remain) == 45000
  assert not np.intersect1d(got.forget, got.remain).size


def test_the_default_seeds_first_forget_indices_by_hand():
  """Seed 2 (SalUn's default): the forget draw is RandomState(1).choice(45000, 4500);
  its first draws, computed once by hand with NumPy's legacy generator."""
  first = np.random.RandomState(1).choice(45000, 4500, replace=False)[:4]
  np.testing.assert_array_equal(first, [25275, 12561, 24707, 25066])
  got = data.salun_forget(np.zeros(45000, np.int64), 1, 4500)
  assert set(first) <= set(got.forget.tolist())


def test_a_salun_run_unlearns_on_its_seeds_split(digits):
  """split='salun' at seed 3: the run's training set leaves out the hold-out of seed 3
  (the original's was seed 1's), and its forget set is RandomState(2)'s draw."""
  cfg = training.default_config("digits", "small_cnn", epochs=1, holdout_seed=1)
  config = UnlearnConfig("unused", "finetune", forget_classes=None, forget_random=0.1, seed=3,
                         split="salun")
  task, remain_all = build.build_task(config, cfg, digits, progress=False)
  keep = data.salun_holdout(digits.train_labels, 3).remain
  want = data.salun_forget(digits.train_labels[keep], 2, round(0.1 * len(keep)))
  np.testing.assert_array_equal(task.forget, want.forget)
  np.testing.assert_array_equal(remain_all, want.remain)
  np.testing.assert_array_equal(task.labels, digits.train_labels[keep])
  # The original trains without seed 1's hold-out: another set of images.
  x, _, _ = training.training_set(cfg, digits)
  assert len(x) == len(keep) and not np.array_equal(x, digits.train_images[keep])
  with pytest.raises(ValueError, match="trained with one"):
    build.build_task(config, dataclasses.replace(cfg, holdout_seed=None), digits)
  with pytest.raises(ValueError, match="seed >= 1"):
    UnlearnConfig("unused", "finetune", forget_classes=(0,), seed=0, split="salun")
