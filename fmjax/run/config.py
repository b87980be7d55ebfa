"""An unlearning run's settings: :class:`UnlearnConfig`, its paper defaults, its setting."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

import numpy as np

from fmjax import _checks, data, training
from fmjax.methods import MethodSettings, get_method


def default_ratio(dataset: str) -> float:
  """The paper's mask ratio: 0.02 on CIFAR-10/100, 0.04 on MNIST-like data and Tiny-ImageNet."""
  return 0.02 if data.DATASETS[dataset].family == "cifar" else 0.04


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
  """Settings of one unlearning run (everything that changes its result).

  Attributes:
    checkpoint: the training run's work directory (the original model).
    method: a name in :data:`fmjax.methods.METHODS`.
    forget_classes: the classes to remove; None = the outliers the training
      run was given (``noise_fraction``), the outlier-deletion setting, or
      the random subset of ``forget_random``.
    forget_random: forget this fraction of the training set, drawn uniformly
      across classes with the run's seed (the protocol's random-subset
      forgetting; 0.1 in its tables). Needs ``forget_classes=None``.
    settings: the methods' hyper-parameters (mask ratio etc.).
    epochs: fine-tuning epochs T; None = the method's default (30; 0 for
      fisher_noise, influence and ssd; the original epochs for retrain; the
      published epochs of a method with its own procedure).
    compress_epochs: S, the epochs the original schedule is replayed in.
    lr: 'compressed' (the paper; for a method with its own procedure, its
      published constant rate), or a constant rate (the ablation; the
      procedure's rate).
    batch_size: fine-tuning batch; None = the training batch size.
    freeze_mask: keep masked weights at zero during fine-tuning.
    remain_limit: K: methods see only K random remain examples, for scoring
      and for fine-tuning (Section 4.3). None: all of D_r.
    no_remain: methods see no remain data at all (forget data only).
    seed: seeds the edit's key, data subsets and fine-tuning order.
    eval_limit: remain/forget training examples evaluated per readout.
    mia: membership-inference readout.
    relearn_epochs: max epochs of the relearn readout (0: skip it).
    relearn_threshold: forget-set loss that counts as relearned; None = the
      original model's forget-set loss.
  """
  checkpoint: str
  method: str
  forget_classes: tuple[int, ...] | None = (0,)
  forget_random: float | None = None
  settings: MethodSettings = MethodSettings()
  epochs: int | None = None
  compress_epochs: float = 5.0
  lr: Literal["compressed"] | float = "compressed"
  batch_size: int | None = None
  freeze_mask: bool = False
  remain_limit: int | None = None
  no_remain: bool = False
  seed: int = 0
  eval_limit: int | None = 10_000
  mia: bool = True
  relearn_epochs: int = 10
  relearn_threshold: float | None = None

  def __post_init__(self):
    _checks.check_fields(self, {"epochs": ">=0", "compress_epochs": ">0", "batch_size": ">=1",
                                "remain_limit": ">=1", "eval_limit": ">=1",
                                "relearn_epochs": ">=0", "relearn_threshold": ">0"})
    if self.forget_random is not None:
      if not (isinstance(self.forget_random, int | float) and 0 < self.forget_random < 1):
        raise ValueError(f"forget_random (--forget-random) must be a fraction in (0, 1), got "
                         f"{self.forget_random!r} (the protocol uses 0.1).")
      if self.forget_classes is not None:
        raise ValueError(f"forget_random={self.forget_random} and forget_classes="
                         f"{list(self.forget_classes)} both name a forget set; give one (with "
                         "forget_random, set forget_classes=None).")
    if not (self.lr == "compressed" or (isinstance(self.lr, int | float)
                                         and not isinstance(self.lr, bool) and self.lr > 0)):
      raise ValueError(f"lr (--lr) must be 'compressed' or a rate > 0, got {self.lr!r}.")
    _checks.check_fields(self.settings, {
        "ratio": "(0,1]", "score_batch_size": ">=1", "score_limit": ">=1", "ig_steps": ">=1",
        "ig_limit": ">=1", "noise_alpha": ">0", "influence_damping": ">=0",
        "influence_iters": ">=1", "influence_examples": ">=1", "fisher_chunk": ">=1",
        "ssd_alpha": ">0", "ssd_lambda": ">0", "ssd_batch_size": ">=1",
        "salun_fraction": "(0,1]", "scrub_temperature": ">0", "scrub_kl_weight": ">=0",
        "scrub_ce_weight": ">=0", "scrub_max_epochs": ">=0", "scrub_forget_batch_size": ">=1",
        "l1_gamma": ">=0", "neggrad_beta": "[0,1]", "neggrad_forget_batch_size": ">=1"})

  def to_json(self) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(self), default=list))

  @classmethod
  def from_json(cls, raw: dict) -> UnlearnConfig:
    raw = dict(raw)
    raw["settings"] = MethodSettings(**raw.get("settings", {}))
    if raw.get("forget_classes") is not None:
      raw["forget_classes"] = tuple(raw["forget_classes"])
    return cls(**raw)


def make_config(checkpoint: str, method: str, *, ratio: float | None = None,
                **overrides: Any) -> UnlearnConfig:
  """An :class:`UnlearnConfig` with the paper's defaults for the checkpoint's dataset.

  ``ratio`` None takes :func:`default_ratio`; other :class:`MethodSettings`
  fields may be passed by name; None values keep defaults.
  """
  get_method(method)
  setting_names = {f.name for f in dataclasses.fields(MethodSettings)}
  setting_over = {k: overrides.pop(k) for k in list(overrides) if k in setting_names}
  train_cfg = training.read_config(checkpoint)
  ratio = default_ratio(train_cfg.dataset) if ratio is None else ratio
  settings = MethodSettings(ratio=ratio, **{k: v for k, v in setting_over.items()
                                            if v is not None})
  unknown = set(overrides) - {f.name for f in dataclasses.fields(UnlearnConfig)}
  if unknown:
    raise ValueError(f"unknown unlearning settings {sorted(unknown)}.")
  values = {k: v for k, v in overrides.items() if v is not None or k == "forget_classes"}
  if values.get("forget_random") is not None and "forget_classes" not in values:
    values["forget_classes"] = None   # the random subset replaces the default class 0
  if "forget_classes" in values and values["forget_classes"] is not None:
    values["forget_classes"] = tuple(int(c) for c in np.atleast_1d(values["forget_classes"]))
  # runs/x/ and runs/x are one training run: the config must not tell them apart.
  return UnlearnConfig(checkpoint=os.path.normpath(str(checkpoint)), method=method,
                       settings=settings, **values)


def config_setting(config: UnlearnConfig) -> str:
  """'class', 'random' or 'outliers': the forget set a config asks for."""
  if config.forget_classes is not None:
    return "class"
  return "random" if config.forget_random is not None else "outliers"
