"""Dotted overrides of an experiment: ``--set train.epochs=1 --set seeds=0,1``.

Keys:

* ``seeds`` -- the unlearning seeds, comma-separated integers;
* ``train.<field>`` -- a :class:`fmjax.training.TrainConfig` field, applied to
  every original model of the experiment (``train.epochs`` keeps the decay epochs a
  config sets at the same fractions of the training);
* ``unlearn.<field>`` -- an :class:`fmjax.unlearning.UnlearnConfig` field,
  applied to every unit, or a method's field (its settings and recipe),
  applied to every unit whose method has it (``unlearn.score_limit=200``
  reaches every scoring method). An ``unlearn.epochs`` override leaves alone
  the units drawn without training (0 epochs: FisherNoise, Influence, SSD by
  default, a mask-only unit), as the paper draws them;
* ``unlearn.<method>.<field>`` -- a field of one method, applied to its units
  only (``unlearn.salun.batch_size=128``).

Each value is parsed and checked against the field's type (``none`` for an
optional field, comma-separated values for a tuple). The overridden
experiment is what the run records in its ``config.json``, so a run's
directory always says exactly what ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from experiments import _spec
from experiments._spec import Experiment
from fmjax import _fields, methods, training, unlearning


def train_fields() -> dict[str, Any]:
  """``{name: type}`` of the overridable training settings."""
  return {k: v for k, v in _fields.field_types(training.TrainConfig).items()
          if k not in ("dataset", "model")}


def unlearn_fields() -> dict[str, Any]:
  """``{name: type}`` of the overridable unlearning settings: the run's own, then every
  known method's fields (a field several methods have takes its first type)."""
  out = {k: v for k, v in _fields.field_types(unlearning.UnlearnConfig).items()
         if k in unlearning.config_fields()}
  for name, cls in methods.registry().items():
    for k, v in _fields.field_types(cls).items():
      out.setdefault(k, v)
      out[f"{name}.{k}"] = v
  return out


def parse(items: Iterable[str]) -> dict[str, Any]:
  """``['train.epochs=1', 'seeds=0,1']`` -> ``{'train.epochs': 1, 'seeds': (0, 1)}``,
  each value checked against its field's type.

  Raises:
    ValueError: a malformed item, an unknown key (the valid ones are listed) or
      a value of the wrong type.
  """
  fields = {"seeds": tuple[int, ...]}
  fields.update({f"train.{k}": v for k, v in train_fields().items()})
  fields.update({f"unlearn.{k}": v for k, v in unlearn_fields().items()})
  out = {}
  for item in items:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ValueError(f"--set takes KEY=VALUE, got {item!r} (e.g. --set train.epochs=1).")
    if key not in fields:
      prefix = key.split(".")[0] + "." if "." in key else ""
      valid = sorted(k for k in fields if k.startswith(prefix)) or sorted(fields)
      raise ValueError(f"--set {key}: unknown key; valid keys: {', '.join(valid)}.")
    out[key] = _fields.parse_value(text, fields[key], f"--set {key}={text}")
  if "seeds" in out and not out["seeds"]:
    raise ValueError("--set seeds=: give at least one seed, e.g. --set seeds=0.")
  return out


def parse_grids(items: Iterable[str]) -> dict[str, tuple[float, ...]]:
  """``['salun=0.1,0.01']`` -> ``{'salun': (0.1, 0.01)}`` (``--lr-grid``), checked."""
  out: dict[str, tuple[float, ...]] = {}
  for item in items:
    method, sep, text = item.partition("=")
    method = method.strip()
    if not sep or not method or not text.strip():
      raise ValueError(f"--lr-grid takes METHOD=RATE,RATE,..., got {item!r} (e.g. --lr-grid "
                       "salun=0.1,0.03,0.01).")
    methods.get_method(method)
    rates = _fields.parse_value(text, tuple[float, ...], f"--lr-grid {item}")
    if not rates or any(not r > 0 for r in rates):
      raise ValueError(f"--lr-grid {item}: give one or more rates > 0.")
    out[method] = tuple(dict.fromkeys(rates))
  return out


def apply(exp: Experiment, overrides: dict[str, Any], *, strict: bool = True) -> Experiment:
  """``exp`` with the parsed ``overrides`` (see :func:`parse`) applied.

  Raises:
    ValueError: (``strict``) an ``unlearn.`` override that reaches no unit of ``exp``.
  """
  train = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("train.")}
  unlearn = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("unlearn.")}
  def retrained(o):   # train.epochs keeps the decays the config sets at their fractions
    base = (_spec.with_epochs(o.train, train["epochs"])
            if "epochs" in train and "decay_epochs" not in train else o.train)
    return dataclasses.replace(o, train={**base, **train})
  originals = {key: retrained(o) for key, o in exp.originals.items()}
  units, used = [], set()
  for unit in exp.units:
    over = {}
    for key, value in unlearn.items():
      method, _, name = key.rpartition(".")
      if method and method != unit.method:
        continue
      if name not in unlearning.for_method(unit.method, {name: value}):
        continue
      if name == "epochs" and not method and unit.unlearn.get(
          "epochs", methods.defaults(unit.method).epochs) == 0:
        used.add(key)
        continue   # drawn without training (FisherNoise, Influence, SSD, a mask-only unit)
      over[name] = value
      used.add(key)
    units.append(dataclasses.replace(unit, unlearn={**unit.unlearn, **over}))
  unused = sorted(set(unlearn) - used)
  if unused and strict:
    raise ValueError(f"--set unlearn.{unused[0]}: no unit of {exp.name} has that setting (its "
                     f"methods: {', '.join(sorted({u.method for u in exp.units}))}).")
  seeds = overrides.get("seeds", exp.seeds)
  return dataclasses.replace(exp, originals=originals, units=tuple(units), seeds=tuple(seeds))
