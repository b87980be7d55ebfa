"""An experiment's finished units as :class:`UnitResult` s, grouped; its records as CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import pathlib
from collections import defaultdict
from collections.abc import Sequence

from experiments._runner import finished_summary, original_dir, unit_dir
from experiments._spec import Experiment, Unit
from fmjax import checkpoints


@dataclasses.dataclass
class UnitResult:
  unit: Unit
  seed: int
  records: list[dict]
  summary: dict | None   # None: not finished
  config: dict | None = None   # the unit's config.json (None: not started)
  trained: dict | None = None   # its original's training config.json
  trained_last: dict | None = None   # its original's last training record (metrics.jsonl)
  workdir: pathlib.Path | None = None   # the unit's directory (its confidences.npz)


def load_experiment(root: str | pathlib.Path) -> Experiment:
  path = pathlib.Path(root) / "config.json"
  raw = checkpoints.read_config(
      root, kind="experiment", fix="Rerun the experiment's command with a fresh --workdir.",
      start="run one with `python -m experiments.run NAME --workdir ...`.")
  try:
    return Experiment.from_json(raw)
  except (KeyError, TypeError) as e:
    raise ValueError(f"{path} is not an experiment's config ({type(e).__name__}: {e}); is "
                     f"{root} a training or unlearning work directory? Give the directory "
                     "an experiments.run command wrote.") from e


def collect(root: str | pathlib.Path) -> tuple[Experiment, list[UnitResult]]:
  """The experiment and every unit's records (finished or not)."""
  root = pathlib.Path(root)
  exp = load_experiment(root)
  trained = {key: _json_or_none(original_dir(root, key) / "config.json")
             for key in exp.originals}
  last = {key: (checkpoints.read_metrics(original_dir(root, key)) or [None])[-1]
          for key in exp.originals}
  out = []
  for unit, seed in exp.runs():
    d = unit_dir(root, unit.setting, unit.line, seed)
    records = checkpoints.read_metrics(d)
    summary = finished_summary(d)
    out.append(UnitResult(unit, seed, records, summary, _json_or_none(d / "config.json"),
                          trained[unit.original], last[unit.original], d))
  return exp, out


def _json_or_none(path: pathlib.Path) -> dict | None:
  return checkpoints.read_json(path, what="a run's config", fix=(
      "Rerun the experiment's command: the unit runs again.")) if path.is_file() else None


def _scalar_items(record: dict) -> dict:
  out = {}
  for k, v in record.items():
    if isinstance(v, bool) or v is None:
      out[k] = v
    elif isinstance(v, int | float | str):
      out[k] = v
    elif k == "seconds":
      out.update({f"seconds_{p}": s for p, s in v.items()})
  return out


def write_csv(results: Sequence[UnitResult], path: pathlib.Path) -> None:
  rows = []
  for r in results:
    for rec in r.records:
      rows.append({"setting": r.unit.setting, "line": r.unit.line, "method": r.unit.method,
                   "seed": r.seed, "finished": r.summary is not None, **_scalar_items(rec)})
  keys: list[str] = []
  for row in rows:
    keys += [k for k in row if k not in keys]
  buffer = io.StringIO(newline="")
  writer = csv.DictWriter(buffer, fieldnames=keys)
  writer.writeheader()
  writer.writerows(rows)
  checkpoints.write_text(path, buffer.getvalue())


def grouped(results: Sequence[UnitResult]) -> dict[tuple[str, str], list[UnitResult]]:
  groups: dict[tuple[str, str], list[UnitResult]] = defaultdict(list)
  for r in results:
    if r.summary is not None:
      groups[(r.unit.setting, r.unit.line)].append(r)
  return groups


def settings_of(exp: Experiment) -> list[str]:
  return list(dict.fromkeys(u.setting for u in exp.units))
