"""The package's shape, checked: small modules and functions, private names kept private.

Private helper MODULES (``fmjax/_checks.py``, ``fmjax/methods/_channels.py``) are the one
place for shared helpers and may be imported anywhere below their package; a private
NAME (``_apply``, ``report._grouped``) is never used outside the module that defines it.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("fmjax", "experiments")
MAX_LINES, MAX_STATEMENTS = 400, 60


def _sources():
  return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _module_path(dotted: str) -> pathlib.Path:
  return ROOT.joinpath(*dotted.split("."))


def _is_module(dotted: str) -> bool:
  path = _module_path(dotted)
  return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _violations(rel: str, src: str) -> list[str]:
  out = []
  if len(src.splitlines()) > MAX_LINES:
    out.append(f"{rel}: {len(src.splitlines())} lines (> {MAX_LINES})")
  tree = ast.parse(src)
  aliases: dict[str, str] = {}   # local name -> the project module it is
  for node in ast.walk(tree):
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
      n = sum(isinstance(x, ast.stmt) for x in ast.walk(node)) - 1
      if n > MAX_STATEMENTS:
        out.append(f"{rel}:{node.lineno} {node.name}: {n} statements (> {MAX_STATEMENTS})")
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
        PACKAGES):
      for a in node.names:
        full = f"{node.module}.{a.name}"
        if _is_module(full):
          aliases[a.asname or a.name] = full
        elif a.name.startswith("_"):
          out.append(f"{rel}:{node.lineno} imports the private name {full}")
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.split(".")[0] in PACKAGES and a.asname:
          aliases[a.asname] = a.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not _is_module(f"{aliases[node.value.id]}.{node.attr}")):
      out.append(f"{rel}:{node.lineno} uses the private name "
                 f"{aliases[node.value.id]}.{node.attr}")
  return out


def test_modules_and_functions_are_small_and_private_names_stay_private():
  found = [v for p in _sources() for v in _violations(str(p.relative_to(ROOT)), p.read_text())]
  assert found == [], "\n".join(found)


@pytest.mark.parametrize("code, expected", [
    ("from fmjax.procedures import _hidden\n", "imports the private name"),
    ("from experiments import report\nreport._grouped(1)\n", "uses the private name"),
    ("def f():\n" + "  x = 1\n" * 61, "61 statements"),
])
def test_the_checker_catches_each_kind(code, expected):
  assert any(expected in v for v in _violations("probe.py", code))


# The layers of fmjax, lowest first. A module imports only from its own layer and those
# below it; the package's __init__ (its public face) and the command line sit on top.
LAYERS = (
    ("helpers", ("_checks", "_compiled", "_diffs", "_faults", "_fields", "_progress",
                 "xla_flags")),
    ("parallel", ("sharding", "distributed", "_locks")),
    ("core", ("data", "models", "schedules", "masks", "fisher", "steps", "evaluation",
              "checkpoints")),
    ("training", ("procedures", "runner", "finetuning", "training")),
    ("unlearn", ("task", "readouts", "privacy", "methods")),
    ("run", ("run", "unlearning")),
    ("entry", ("__init__", "__main__")),
)


def _layer_of(module: str) -> int:
  for i, (_, names) in enumerate(LAYERS):
    if module in names:
      return i
  raise AssertionError(f"fmjax.{module} is in no layer of tests/test_structure.py:LAYERS")


def _fmjax_imports(src: str) -> set[str]:
  """The top-level fmjax modules ``src`` imports (``fmjax.methods.base`` -> 'methods')."""
  out = set()
  for node in ast.walk(ast.parse(src)):
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
        node.module == "fmjax" or node.module.startswith("fmjax.")):
      parts = node.module.split(".")
      out |= {a.name for a in node.names} if len(parts) == 1 else {parts[1]}
    elif isinstance(node, ast.Import):
      out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fmjax.")}
  return out


def _upward_imports(module: str, src: str) -> list[str]:
  mine = _layer_of(module)
  return [f"fmjax.{module} ({LAYERS[mine][0]}) imports fmjax.{dep} ({LAYERS[_layer_of(dep)][0]})"
          for dep in sorted(_fmjax_imports(src) - {module}) if _layer_of(dep) > mine]


def test_no_module_imports_from_a_layer_above_its_own():
  bad = []
  for path in sorted((ROOT / "fmjax").rglob("*.py")):
    rel = path.relative_to(ROOT / "fmjax").parts
    module = rel[0].removesuffix(".py")
    bad += _upward_imports(module, path.read_text())
  assert not bad, "\n".join(bad)


def test_the_layer_check_fires_on_an_upward_import():
  assert _upward_imports("masks", "from fmjax.methods import base\n") == [
      "fmjax.masks (core) imports fmjax.methods (unlearn)"]
  assert _upward_imports("steps", "import fmjax.run.build\n") == [
      "fmjax.steps (core) imports fmjax.run (run)"]
  assert _upward_imports("methods", "from fmjax import masks, procedures\n") == []
