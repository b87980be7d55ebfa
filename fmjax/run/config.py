"""An unlearning run's settings: :class:`UnlearnConfig` (the run's and its method's, the
defaults its method leaves to the data filled in), the forget setting it asks for."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

import numpy as np

from fmjax import _checks, data, training
from fmjax.methods import (
  Method,
  field_names,
  from_json,
  get_method,
  make,
)

LEGACY_FIX = ("it was written by fmjax before methods owned their settings (the method as "
              "a name, its settings in a 'settings' block); this version cannot resume or "
              "extend that run: give this one a new --workdir, or rerun the old one with the "
              "fmjax release that wrote it.")


def is_legacy(raw: dict) -> bool:
  """Whether a ``config.json`` holds the layout before methods owned their settings."""
  return isinstance(raw.get("method"), str) or "settings" in raw


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
  """Settings of one unlearning run (everything that changes its result).

  Attributes:
    checkpoint: the training run's work directory (the original model).
    method: the method with ALL its settings, its training recipe included (a
      :class:`fmjax.methods.Method`; a name is its defaults).
    forget_classes: the classes to remove; None = the outliers the training
      run was given (``noise_fraction``), the outlier-deletion setting, or
      the random subset of ``forget_random``.
    forget_random: forget this fraction of the training set, drawn uniformly
      across classes with the run's seed (the protocol's random-subset
      forgetting; 0.1 in its tables). Needs ``forget_classes=None``.
    remain_limit: K: methods see only K random remain examples, for scoring
      and for fine-tuning (Section 4.3). None: all of D_r.
    no_remain: methods see no remain data at all (forget data only).
    seed: seeds the edit's key, data subsets and training order.
    forget_seed: None: ``seed`` also draws the random forget set and the evaluated
      subsets. An int draws them instead (and ``remain_limit``'s subset), so that runs
      over many seeds (an ensemble) share one forget set and one set of evaluated
      examples while their initialisation, edits and data orders differ.
    eval_limit: remain/forget training examples evaluated per readout.
    test_limit: test examples evaluated per readout (a fixed random subset); None: all.
    eval_epochs: 'all': a readout after every fine-tuning epoch (the curves, the
      volatility); 'last': only after the last (and of the original model and after
      the edit), for tables of final numbers at a fraction of the cost. The model
      and every number of the last epoch are the same either way.
    mia: membership-inference readout.
    confidences: after the last epoch, store the final model's per-example logit-scaled
      confidences (:func:`fmjax.privacy.logit_confidence`) on D_f, the evaluated
      sample of D_r and the test set, with their indices, in ``confidences.npz``
      (checksummed in the run's records): what :mod:`fmjax.privacy`'s ensemble scores
      read.
    confidence_epochs: 'last': only the final model's confidences (above); 'all' (needs
      ``confidences``): also those right after the edit (epoch 0) and after every
      fine-tuning epoch, one ``confidences-epoch<k>.npz`` each, checksummed in that
      epoch's record and committed with its checkpoint: how forgetting quality evolves
      during unlearning (:func:`fmjax.run.summary.summarize` lists them by epoch).
    keep_checkpoints: False: once the run has finished (its summary written), its
      checkpoints are deleted; it keeps its records, summary and confidences, which is
      all an ensemble member's scores read (:mod:`fmjax.privacy`), and a rerun reports it
      from those files (with no final state). Until it finishes it checkpoints and
      resumes as any run.
    relearn_epochs: max epochs of the relearn readout (0: skip it).
    relearn_threshold: forget-set loss that counts as relearned; None = the
      original model's forget-set loss.
    split: None: fmjax's splits (the training set as the original saw it; random
      forget sets drawn with ``numpy.random.default_rng(seed)``). 'salun': SalUn's
      code index for index: the run's training set is the one without SalUn's hold-out
      of THIS seed (its original trains on the hold-out of seed 1), and the forget set
      is drawn with ``RandomState(seed - 1)`` (:func:`fmjax.data.salun_forget`); needs
      an original trained with ``holdout_seed`` and a seed >= 1.
  """
  checkpoint: str
  method: Method
  forget_classes: tuple[int, ...] | None = (0,)
  forget_random: float | None = None
  remain_limit: int | None = None
  no_remain: bool = False
  seed: int = 0
  forget_seed: int | None = None
  eval_limit: int | None = 10_000
  test_limit: int | None = None
  eval_epochs: Literal["all", "last"] = "all"
  mia: bool = True
  confidences: bool = False
  confidence_epochs: Literal["last", "all"] = "last"
  keep_checkpoints: bool = True
  relearn_epochs: int = 10
  relearn_threshold: float | None = None
  split: Literal["salun"] | None = None

  def __post_init__(self):
    if isinstance(self.method, str):
      object.__setattr__(self, "method", get_method(self.method)())
    if not isinstance(self.method, Method):
      raise ValueError(f"method must be a method name or a fmjax.methods.Method, got "
                       f"{self.method!r}.")
    _checks.check_fields(self, {"remain_limit": ">=1", "eval_limit": ">=1", "forget_seed": ">=0",
                                "test_limit": ">=1",
                                "relearn_epochs": ">=0", "relearn_threshold": ">0"})
    if self.eval_epochs not in ("all", "last"):
      raise ValueError(f"eval_epochs (--eval-epochs) must be 'all' (a readout every epoch) or "
                       f"'last' (only the final model), got {self.eval_epochs!r}.")
    if self.confidence_epochs not in ("all", "last"):
      raise ValueError(f"confidence_epochs must be 'last' (the final model) or 'all' (every "
                       f"epoch too), got {self.confidence_epochs!r}.")
    if self.confidence_epochs == "all" and not self.confidences:
      raise ValueError("confidence_epochs='all' stores confidences after every epoch; set "
                       "confidences=True too.")
    if self.split not in (None, "salun"):
      raise ValueError(f"split (--split) must be 'salun' or None (fmjax's splits), got "
                       f"{self.split!r}.")
    if self.split == "salun" and not (isinstance(self.seed, int) and self.seed >= 1):
      raise ValueError(f"split='salun' draws the forget set with RandomState(seed - 1): give "
                       f"a seed >= 1 (SalUn's default is 2), got {self.seed!r}.")
    if self.forget_random is not None:
      if not (isinstance(self.forget_random, int | float) and 0 < self.forget_random < 1):
        raise ValueError(f"forget_random (--forget-random) must be a fraction in (0, 1), got "
                         f"{self.forget_random!r} (the protocol uses 0.1).")
      if self.forget_classes is not None:
        raise ValueError(f"forget_random={self.forget_random} and forget_classes="
                         f"{list(self.forget_classes)} both name a forget set; give one (with "
                         "forget_random, set forget_classes=None).")

  @property
  def draw_seed(self) -> int:
    """The seed of the forget set and the evaluated subsets: ``forget_seed``, else ``seed``."""
    return self.seed if self.forget_seed is None else self.forget_seed

  def to_json(self) -> dict:
    raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    raw["method"] = self.method.to_json()
    if raw["confidence_epochs"] == "last":   # written only when set: older runs still match
      del raw["confidence_epochs"]
    if raw["keep_checkpoints"]:   # likewise
      del raw["keep_checkpoints"]
    return json.loads(json.dumps(raw, default=list))

  @classmethod
  def from_json(cls, raw: dict) -> UnlearnConfig:
    if is_legacy(raw):
      raise ValueError(f"this unlearning config.json cannot be read: {LEGACY_FIX}")
    raw = dict(raw)
    raw["method"] = from_json(raw["method"])
    if raw.get("forget_classes") is not None:
      raw["forget_classes"] = tuple(raw["forget_classes"])
    return cls(**raw)


def config_fields() -> frozenset[str]:
  """The run's own settings (every field but the checkpoint and the method)."""
  return frozenset(f.name for f in dataclasses.fields(UnlearnConfig)) - {"checkpoint",
                                                                          "method"}


def for_method(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
  """The ``overrides`` that apply to method ``name``: the run's own settings and the
  method's fields (what a setting shared by many methods, e.g. ``score_limit``, keeps
  for one of them). A name neither has is dropped."""
  keep = config_fields() | field_names(name)
  return {k: v for k, v in overrides.items() if k in keep}


def make_config(checkpoint: str, method: str | Method, *, dataset: str | None = None,
                **overrides: Any) -> UnlearnConfig:
  """An :class:`UnlearnConfig` with the defaults for the checkpoint's dataset.

  ``method`` is a name (its defaults) or a :class:`fmjax.methods.Method`;
  ``overrides`` are the run's settings and the method's fields by name (None keeps
  a default). The mask ratio, when not given, is the paper's for the dataset
  (``dataset``, else the one the checkpoint's training run names: give it to check a
  config before the original is trained).

  Raises:
    ValueError: a setting neither the run nor the method has (both are listed).
  """
  name = method if isinstance(method, str) else method.name
  get_method(name)
  own = field_names(name)
  given = {k: v for k, v in overrides.items() if v is not None or k == "forget_classes"}
  unknown = sorted(set(given) - own - config_fields())
  if unknown:
    raise ValueError(f"unknown setting(s) {unknown} for {name}; its settings: "
                     f"{', '.join(sorted(own))}; the run's: {', '.join(sorted(config_fields()))}.")
  settings = {k: given.pop(k) for k in list(given) if k in own}
  method = (make(name, **settings) if isinstance(method, str)
            else dataclasses.replace(method, **settings))
  method = method.for_data(data.DATASETS[dataset or training.read_config(checkpoint).dataset])
  if given.get("forget_random") is not None and "forget_classes" not in given:
    given["forget_classes"] = None   # the random subset replaces the default class 0
  if "forget_classes" in given and given["forget_classes"] is not None:
    given["forget_classes"] = tuple(int(c) for c in np.atleast_1d(given["forget_classes"]))
  # runs/x/ and runs/x are one training run: the config must not tell them apart.
  return UnlearnConfig(checkpoint=os.path.normpath(str(checkpoint)), method=method, **given)


def config_setting(config: UnlearnConfig) -> str:
  """'class', 'random' or 'outliers': the forget set a config asks for."""
  if config.forget_classes is not None:
    return "class"
  return "random" if config.forget_random is not None else "outliers"
