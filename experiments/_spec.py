"""What an experiment is: original models to train, and units to run over seeds."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from fmjax.methods import defaults, field_names
from fmjax.unlearning import for_method

# The one cheap form of an experiment's unlearning, shared by --small (digits, below) and
# --smoke (the experiment's own data and models, :data:`SMOKE`): every unit one epoch (0
# stays 0), cheap scoring and readouts; each unit takes the settings its method has.
CHEAP_UNLEARN = {"relearn_epochs": 0, "eval_limit": 300, "score_limit": 200, "ig_steps": 2,
                 "ig_limit": 64, "cg_iters": 2, "hessian_examples": 64, "fisher_chunk": 32}
SMALL_TRAIN = {"epochs": 2}
# --smoke (make SMOKE=1) as --set overrides: one epoch on 320 examples (and the
# experiment's first seed only).
SMOKE = ("train.epochs=1", "train.train_limit=320", "unlearn.epochs=1",
         *(f"unlearn.{k}={v}" for k, v in CHEAP_UNLEARN.items()))
# A learning-rate sweep's tuning lines run the experiment's seeds plus this: disjoint from
# the seeds it reports (and from a privacy experiment's reference ensemble, + 1000).
TUNING_OFFSET = 2000


@dataclasses.dataclass(frozen=True)
class Original:
  """A model to train first: ``fmjax.training.default_config(dataset, model, **train)``."""
  dataset: str
  model: str
  train: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Unit:
  """One unlearning run, repeated over the experiment's seeds.

  Attributes:
    setting: the panel of a figure / column group of a table it belongs to.
    line: its curve / row label.
    method: the method name.
    original: key of the :class:`Original` it starts from.
    unlearn: overrides for :func:`fmjax.unlearning.make_config`.
    group: units of one group are one method at several settings (a
      learning-rate sweep); the protocol table reports the best of them by
      the average gap to Retrain. None: a line of its own.
    seed_offset: the unit runs the experiment's seeds plus this (a second, disjoint
      ensemble of the same method: Retrain's reference half in a privacy experiment).
    tuning: a line that only selects a sweep's rate (:func:`sweep_lr`): it runs on
      tuning seeds (``seed_offset`` :data:`TUNING_OFFSET`), its gaps are to the
      setting's tuning Retrain, and no reported row is one of its numbers.
  """
  setting: str
  line: str
  method: str
  original: str = "main"
  unlearn: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  group: str | None = None
  seed_offset: int = 0
  tuning: bool = False

  def seeds(self, exp_seeds: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s + self.seed_offset for s in exp_seeds)


PROTOCOL_METRICS = ("UA", "RA", "TA", "MIA")


@dataclasses.dataclass(frozen=True)
class Published:
  """A published row the report sets beside one of the experiment's own lines
  (:mod:`experiments.report.published`): the protocol's four numbers as a paper printed them.

  Attributes:
    setting: the experiment's setting it belongs to.
    line: the experiment's line (or sweep group) it is compared with.
    row: the row's name in the source.
    values: ``{'UA'|'RA'|'TA'|'MIA': (mean, standard deviation)}`` in %, as printed
      (MIA: MIA-efficacy).
    avg_gap: the source's average gap to its own Retrain row, as printed (the tests check
      the transcription against it).
    rte: the source's run time, in minutes (None: not printed).
    trials: how many runs its means and deviations are over.
    source: where the numbers were read: the paper, its table, the copy read.
  """
  setting: str
  line: str
  row: str
  values: Mapping[str, tuple[float, float]]
  avg_gap: float
  rte: float | None
  trials: int
  source: str

  def __post_init__(self):
    if set(self.values) != set(PROTOCOL_METRICS):
      raise ValueError(f"published row {self.row!r} ({self.setting}): values must give "
                       f"exactly {PROTOCOL_METRICS}, got {sorted(self.values)}.")
    object.__setattr__(self, "values", {k: (float(self.values[k][0]), float(self.values[k][1]))
                                        for k in PROTOCOL_METRICS})


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A whole experiment.

  Attributes:
    name: the config module's name.
    title: what it reproduces.
    originals: models to train, by key.
    units: the runs.
    seeds: unlearning seeds (the original models are trained once, seed 0 of
      their training config; the seeds vary the edit's key, the fine-tuning
      order and the data subsets).
    tables: report tables: any of 'final', 'mask_only', 'outliers',
      'volatility', 'seconds', 'protocol', 'recipes' (every report ends with the
      protocol table when this does not name it).
    figure: 'curves' (forget row and remain row, one panel per setting),
      'protocol' (the average gap to Retrain per method and setting) or None.
    rows: the two curve rows of the figure (readout names).
    published: rows of a published table to set beside the measured ones (the report's
      'published' table); presentation only, like the title: a run directory does not
      depend on them.
  """
  name: str
  title: str
  originals: Mapping[str, Original]
  units: tuple[Unit, ...]
  seeds: tuple[int, ...] = (0, 1, 2)
  tables: tuple[str, ...] = ("final", "mask_only", "volatility", "seconds")
  figure: str | None = "curves"
  rows: tuple[str, str] = ("forget_test_accuracy", "remain_test_accuracy")
  published: tuple[Published, ...] = ()

  def __post_init__(self):
    keys = [(u.setting, u.line) for u in self.units]
    if len(set(keys)) != len(keys):
      raise ValueError(f"experiment {self.name}: two units share a (setting, line).")
    for u in self.units:
      unknown = set(u.unlearn) - set(for_method(u.method, dict(u.unlearn)))
      if unknown:
        raise ValueError(f"experiment {self.name}: unit {u.line!r} sets {sorted(unknown)}, "
                         f"which {u.method} does not have; its settings: "
                         f"{', '.join(sorted(field_names(u.method)))}.")
    missing = {u.original for u in self.units} - set(self.originals)
    if missing:
      raise ValueError(f"experiment {self.name}: units refer to unknown originals {missing}.")
    lines = {(u.setting, x) for u in self.units for x in (u.line, u.group) if x}
    unmatched = [(p.setting, p.line) for p in self.published if (p.setting, p.line) not in lines]
    if unmatched:
      raise ValueError(f"experiment {self.name}: published rows name (setting, line) pairs "
                       f"it does not run: {unmatched}.")

  def runs(self) -> list[tuple[Unit, int]]:
    """Every (unit, seed) the experiment runs, seed by seed (a unit's seeds include its
    ``seed_offset``)."""
    return [(u, u.seeds(self.seeds)[i]) for i in range(len(self.seeds)) for u in self.units]

  def to_json(self) -> dict:
    raw = json.loads(json.dumps(dataclasses.asdict(self), default=list))
    for u in raw["units"]:   # written only when set: older experiment directories still match
      if u.get("seed_offset") == 0:
        del u["seed_offset"]
      if u.get("tuning") is False:
        del u["tuning"]
    if not raw["published"]:   # likewise
      del raw["published"]
    return raw

  @classmethod
  def from_json(cls, raw: Mapping) -> Experiment:
    raw = dict(raw)
    raw["originals"] = {k: Original(**v) for k, v in raw["originals"].items()}
    raw["units"] = tuple(Unit(**u) for u in raw["units"])
    raw["published"] = tuple(Published(**p) for p in raw.get("published", ()))
    for k in ("seeds", "tables", "rows"):
      raw[k] = tuple(raw[k])
    return cls(**raw)


def sweep_lr(exp: Experiment, grids: Mapping[str, tuple[float, ...]], *,
             tune: bool = True) -> Experiment:
  """``exp`` with every unit of each method in ``grids`` replaced by one unit per
  learning rate of its grid (line ``'<line> lr=<rate>'``, one group per line).

  The rate is the unlearning config's ``lr``: the constant rate of a method
  with its own procedure, or a constant fine-tuning rate for the paper's
  methods (instead of the compressed schedule).

  ``tune`` (the default) makes the selection honest: each rate also runs on tuning seeds
  (line ``'<line> lr=<rate> (tuning)'``, the experiment's seeds + :data:`TUNING_OFFSET`),
  and each swept setting gains a tuning Retrain (``'<retrain line> (tuning)'``, the same
  seeds); the report picks the rate whose tuning line is closest to the tuning Retrain and
  reports that rate's evaluation seeds against the evaluated Retrain, so no reported
  number took part in the choice. ``tune=False``: the rate is picked on the reported
  seeds themselves (the protocol's usual practice; optimistic).
  """
  unknown = [m for m in grids if not any(u.method == m for u in exp.units)]
  if unknown:
    raise ValueError(f"--lr-grid names method(s) {unknown} that the experiment does not run; "
                     f"its methods: {sorted({u.method for u in exp.units})}.")
  units, tuning = [], []
  for u in exp.units:
    grid = grids.get(u.method)
    if not grid:
      units.append(u)
      continue
    if not defaults(u.method).trains and "epochs" not in u.unlearn:
      raise ValueError(f"--lr-grid {u.method}: the method does not train (no learning rate to "
                       "sweep).")
    for lr in grid:
      if not (isinstance(lr, int | float) and lr > 0):
        raise ValueError(f"--lr-grid {u.method}: rates must be > 0, got {lr!r}.")
      rated = dataclasses.replace(u, line=f"{u.line} lr={lr:g}", group=u.line,
                                  unlearn={**u.unlearn, "lr": float(lr)})
      units.append(rated)
      if tune:
        tuning.append(dataclasses.replace(rated, line=f"{rated.line} (tuning)", tuning=True,
                                          seed_offset=u.seed_offset + TUNING_OFFSET))
  refs = []
  for setting in dict.fromkeys(u.setting for u in tuning):
    ref = next((u for u in exp.units if u.setting == setting and u.method == "retrain"
                and not u.seed_offset and not u.tuning), None)
    if ref is None:
      raise ValueError(f"--lr-grid picks each rate on tuning seeds against a tuning Retrain, "
                       f"but setting {setting!r} of experiment {exp.name} has no Retrain "
                       "unit; add one (or sweep with tune=False).")
    refs.append(dataclasses.replace(ref, line=f"{ref.line} (tuning)", tuning=True,
                                    seed_offset=TUNING_OFFSET))
  return dataclasses.replace(exp, units=tuple(units + refs + tuning))


def slug(text: str) -> str:
  """A directory name for a setting or line label."""
  return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "_"


def with_epochs(train: dict, epochs: int) -> dict:
  """``train`` at ``epochs`` epochs; decays it sets keep their fractions of the training
  (182 epochs with decays at 91 and 136 -> at 1 epoch 0.5 and 0.747), as the datasets'
  default schedules do (:func:`fmjax.training.default_config`)."""
  out = {**train, "epochs": epochs}
  if train.get("decay_epochs") and train.get("epochs"):
    out["decay_epochs"] = tuple(d / train["epochs"] * epochs for d in train["decay_epochs"])
  return out


def shrink(exp: Experiment, *, dataset: str = "digits", model: str = "small_cnn",
           train_limit: int | None = None) -> Experiment:
  """The small/fast form: every original on ``dataset``/``model`` for 2 epochs,
  units with 1 fine-tuning epoch (0 stays 0) and cheap scoring, the first seed."""
  originals = {k: Original(dataset, model, {**with_epochs(o.train, SMALL_TRAIN["epochs"]),
                                            **({"train_limit": train_limit}
                                               if train_limit else {})})
               for k, o in exp.originals.items()}
  units = []
  for u in exp.units:
    over = {**for_method(u.method, CHEAP_UNLEARN), **u.unlearn}
    default = defaults(u.method).epochs
    if u.unlearn.get("epochs", default) != 0:
      over["epochs"] = 1
    if "remain_limit" in over:
      over["remain_limit"] = min(over["remain_limit"], 50)
    units.append(dataclasses.replace(u, unlearn=over))
  return dataclasses.replace(exp, originals=originals, units=tuple(units), seeds=exp.seeds[:1])
