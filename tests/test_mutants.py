"""The mutation-testing driver's own rules (``make mutants`` itself runs for ~40 minutes)."""

from __future__ import annotations

import pytest

from tests import mutants


def test_the_sample_drops_only_the_exotic_binary_replacements():
  assert mutants._redundant("core/ReplaceBinaryOperator_Add_BitXor")
  assert mutants._redundant("core/ReplaceBinaryOperator_Mul_Pow")
  assert not mutants._redundant("core/ReplaceBinaryOperator_Add_Sub")
  assert not mutants._redundant("core/ReplaceBinaryOperator_Div_Mul")
  assert not mutants._redundant("core/ReplaceComparisonOperator_Lt_LtE")
  assert not mutants._redundant("core/NumberReplacer")


def test_wilson_interval_by_hand():
  # k = 8 of n = 10: centre (0.8 + 0.1921) / 1.3842 = 0.7167, half 0.2256.
  lo, hi = mutants.wilson(8, 10)
  assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
  assert mutants.wilson(0, 0) == (0.0, 1.0)


def test_every_scope_names_real_modules_and_tests():
  for modules, tests in mutants.SCOPES.values():
    for path in modules + tests:
      assert (mutants.ROOT / path.split("::")[0]).exists(), path
    config = mutants._config(modules, tests, 60.0)
    assert "-x -q" in config and "not slow" in config and tests[0] in config


def test_bad_options_are_refused(capsys):
  assert mutants.main(["--scopes", "nonsense", "--workdir", "unused"]) == 2
  assert "scopes must be among" in capsys.readouterr().err


def test_mutants_are_written_into_a_private_copy_whose_fmjax_the_tests_import(tmp_path):
  import subprocess
  import sys
  tree = mutants.copy_tree(tmp_path)
  assert (tree / "fmjax" / "readouts.py").read_text() == (
      mutants.ROOT / "fmjax" / "readouts.py").read_text()
  assert mutants.copy_tree(tmp_path) == tree and not (tmp_path / "tree.partial").exists()
  out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--co", "tests/test_mutants.py"], cwd=tree, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stdout + out.stderr
  probe = tree / "tests" / "test_probe.py"   # what a test run in the copy imports
  probe.write_text("import fmjax\n\ndef test_where():\n  print(fmjax.__file__)\n")
  out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                        str(probe)], cwd=tree, capture_output=True, text=True, timeout=120)
  assert str(tree / "fmjax" / "__init__.py") in out.stdout, out.stdout
