"""Published rows beside measured ones: SalUn's Table 1 as transcribed, the tolerance rule,
and the report's table in SalUn's format (experiments.report.published)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import salun_recipe
from experiments._spec import Experiment, Original, Published, Unit
from experiments.report import published
from experiments.report.load import UnitResult

METRICS = ("UA", "RA", "TA", "MIA")


def test_each_transcribed_row_reproduces_its_printed_average_gap():
  """Table 1 prints, per row, four gaps to Retrain and their mean (Avg. Gap): the
  transcribed means must give that mean back to its rounding (four gaps of values rounded
  to 0.01 average within 0.01 of the printed one). A mistyped digit of 0.04 or more fails."""
  rows = salun_recipe.PUBLISHED
  assert len(rows) == 10 and {p.setting for p in rows} == {"random 10%", "random 50%"}
  for p in rows:
    ref = next(r for r in rows if r.setting == p.setting and r.row == "Retrain")
    gaps = [abs(p.values[k][0] - ref.values[k][0]) for k in METRICS]
    assert abs(np.mean(gaps) - p.avg_gap) <= 0.0101, (p.setting, p.row, np.mean(gaps))
    assert p.trials == 10 and "Table 1" in p.source and p.rte > 0
  # Hand-read cells (the table's printed gaps in parentheses, not the means we typed).
  cell = {(p.setting, p.row): p.values for p in rows}
  assert cell[("random 10%", "SalUn")]["MIA"] == (14.39, 0.82)   # printed gap 1.51
  assert abs(14.39 - cell[("random 10%", "Retrain")]["MIA"][0] - 1.51) < 1e-9
  assert cell[("random 50%", "l1-sparse")]["UA"] == (1.44, 6.33)   # printed gap 6.47
  assert abs(cell[("random 50%", "Retrain")]["UA"][0] - 1.44 - 6.47) < 1e-9


def test_published_rows_name_lines_the_recipe_runs():
  exp = salun_recipe.get_config()
  lines = {(u.setting, u.line): u for u in exp.units}
  for p in exp.published:
    assert (p.setting, p.line) in lines
  ft = lines[("random 10%", "FT (SalUn's code)")]
  assert ft.method == "finetune" and ft.unlearn["epochs"] == 10 and ft.unlearn["lr"] == 0.01
  assert "published" in exp.tables
  # Presentation only: config.json carries the rows, and a run directory ignores them.
  from experiments import _runner
  assert "published" in _runner.PRESENTATION
  assert Experiment.from_json(exp.to_json()).published == exp.published


def test_the_tolerance_is_two_standard_errors_with_a_one_point_floor():
  # SE = sqrt(0.69^2/10 + sd^2/3); measured 5.24 +- d around the published 5.24.
  meas = [4.0, 5.0, 6.0]   # mean 5.0, sd 1.0: SE = sqrt(0.047610 + 0.333333) = 0.6172
  se = math.sqrt(0.69 ** 2 / 10 + 1.0 / 3)
  assert not published.outside((5.0 + 2 * se - 1e-6, 0.69), 10, meas)
  assert published.outside((5.0 + 2 * se + 1e-6, 0.69), 10, meas)
  # Deviations of 0: the floor of one point decides.
  assert not published.outside((100.0, 0.0), 10, [99.01, 99.01])
  assert published.outside((100.0, 0.0), 10, [98.99, 98.99])
  # One seed: its own spread counts as 0.
  assert published.outside((50.0, 1.0), 10, [48.0])   # SE 0.316, floor 1: 2 > 1
  assert not published.outside((50.0, 4.0), 10, [48.0])   # SE 1.265: 2 < 2.53


def _result(exp, unit, seed, ua, ra, ta, mia, rte):
  summary = {"protocol": {"UA": ua, "RA": ra, "TA": ta, "MIA": mia}}
  records = [{"phase": "edit", "seconds": {"score": rte / 2, "evaluate": 99.0}},
             {"phase": "finetune", "seconds": {"finetune": rte / 2}}]
  return UnitResult(unit, seed, records, summary)


def test_the_table_prints_salun_format_and_flags_exactly_the_cells_outside():
  pub = lambda line, row, v, gap: Published("random 10%", line, row, v, gap, 1.0, 10, "Src")
  exp = Experiment(
      "t", "t", {"main": Original("digits", "small_cnn")},
      (Unit("random 10%", "retrain", "retrain"), Unit("random 10%", "ft", "finetune"),
       Unit("random 10%", "other", "finetune")),
      seeds=(0, 1), tables=("published",), figure=None,
      published=(pub("retrain", "Retrain", {"UA": (5.0, 0.5), "RA": (100.0, 0.0),
                                            "TA": (94.0, 0.1), "MIA": (12.0, 0.1)}, 0.0),
                 pub("ft", "FT", {"UA": (1.0, 0.5), "RA": (99.0, 0.1),
                                  "TA": (94.0, 0.1), "MIA": (3.0, 0.1)}, 3.5)))
  retrain, ft, other = exp.units
  results = [_result(exp, retrain, 0, .04, 1.0, .94, .12, 600), _result(exp, retrain, 1,
             .06, 1.0, .94, .12, 660),
             # ft: UA 1.0 (in), RA 99.5 (in: the floor), TA 90.0 (out), MIA 6.0 (out).
             _result(exp, ft, 0, .01, .995, .90, .06, 60), _result(exp, ft, 1, .01, .995,
                                                                 .90, .06, 60),
             _result(exp, other, 0, .5, .5, .5, .5, 6)]
  text = published.published_table(exp, results)
  rows = [line for line in text.splitlines() if line.startswith("| random 10%")]
  assert [r.split(" | ")[1:3] for r in rows] == [
      ["retrain", "measured"], ["Retrain", "published (10 trials)"], ["ft", "measured"],
      ["FT", "published (10 trials)"], ["other", "measured"]]
  # Measured Retrain: UA 5.00 +- 1.41 (0.00); RTE (600 + 660) / 2 s = 10.50 min.
  assert "| 5.00 ± 1.41 (0.00) |" in rows[0] and "| 10.50 | 2 |" in rows[0]
  # ft's gaps to the measured Retrain: 4.00, 0.50, 4.00, 6.00 -> Avg. gap 3.625; RTE 60 s.
  assert "| 1.00 ± 0.00 (4.00) |" in rows[2] and "| 99.50 ± 0.00 (0.50) |" in rows[2]
  assert "| **90.00 ± 0.00 (4.00)** ⚑ |" in rows[2] and "| **6.00 ± 0.00 (6.00)** ⚑ |" in rows[2]
  assert "| 3.62 | 1.00 | 2 |" in rows[2]   # 3.625, printed half to even
  # The published row: its gaps to the published Retrain (4, 1, 0, 9: Avg. gap 3.50),
  # RTE 1.00 min.
  assert "| 1.00 ± 0.50 (4.00) | 99.00 ± 0.10 (1.00) |" in rows[3]
  assert "| 3.00 ± 0.10 (9.00) | 3.50 | 1.00 | 10 |" in rows[3]
  # A line without a published row is printed, never flagged.
  assert "⚑" not in rows[4] and "⚑" not in rows[0]
  assert "2 of 8 compared cells lie outside the tolerance" in text
  assert "random 10% / ft / TA: 90.00 against 94.00" in text and "Published rows: Src." in text


def test_a_swept_line_is_compared_through_its_group():
  from experiments._spec import sweep_lr
  base = Experiment("t", "t", {"main": Original("digits", "small_cnn")},
                    (Unit("r", "retrain", "retrain"), Unit("r", "salun", "salun")),
                    seeds=(0,), tables=("published",), figure=None,
                    published=(Published("r", "salun", "SalUn", {k: (10.0, 0.0) for k in METRICS},
                                         0.0, None, 10, "Src"),))
  exp = sweep_lr(base, {"salun": (0.1,)}, tune=False)
  assert exp.published == base.published   # the group 'salun' still names the line
  salun = next(u for u in exp.units if u.line == "salun lr=0.1")
  retrain = exp.units[0]
  results = [_result(exp, retrain, 0, .1, .1, .1, .1, 60),
             _result(exp, salun, 0, .1, .1, .1, .5, 60)]
  text = published.published_table(exp, results)
  assert "| r | salun lr=0.1 | measured |" in text and "| r | SalUn | published" in text
  assert "1 of 4 compared cells" in text and "| – |" in text   # published RTE not printed


def test_published_rows_are_checked_when_the_experiment_is_built():
  with pytest.raises(ValueError, match=r"values must give exactly"):
    Published("r", "x", "X", {"UA": (1.0, 0.0)}, 0.0, None, 1, "s")
  with pytest.raises(ValueError, match=r"published rows name .* it does not run: \[\('r', 'x'\)\]"):
    Experiment("t", "t", {"main": Original("digits", "small_cnn")},
               (Unit("r", "retrain", "retrain"),),
               published=(Published("r", "x", "X", {k: (1.0, 0.0) for k in METRICS}, 0.0,
                                    None, 1, "s"),))


def test_an_experiment_without_published_rows_keeps_its_config_json():
  exp = Experiment("t", "t", {"main": Original("digits", "small_cnn")},
                   (Unit("r", "retrain", "retrain"),))
  assert "published" not in exp.to_json()
  assert Experiment.from_json(exp.to_json()).published == ()
