"""A method of the user's own, in one file outside fmjax: registered through ``--import``
or an installed package's entry point, with its options in ``--help``, its settings in
``config.json``, run end to end through the command line."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
from typing import ClassVar

import pytest

from fmjax import methods

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def user_module() -> str:
  """The user's whole file, as the README shows it: an objective and a method that owns
  its settings and recipe."""
  block = re.search(r"<!-- user-method:start -->\s*```python\n(.*?)```\s*"
                    r"<!-- user-method:end -->", README.read_text(), re.S)
  assert block, "README.md lost its user-method block"
  return block.group(1)


def _cli(args, path, **env):
  environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get(
      "PYTHONPATH", "")]), **env}
  return subprocess.run([sys.executable, "-m", "fmjax", *args], capture_output=True,
                        text=True, env=environ, timeout=300)


@pytest.fixture
def user_package(tmp_path):
  (tmp_path / "my_unlearning.py").write_text(user_module())
  return tmp_path


def test_a_users_method_runs_end_to_end_through_the_cli(user_package, trained, tmp_path):
  imports = ["--import", "my_unlearning", "--method", "gradient_ascent"]
  helped = _cli(["unlearn", *imports, "--help"], user_package)
  assert helped.returncode == 0, helped.stderr
  text = " ".join(helped.stdout.split())
  assert "gradient_ascent settings" in text and "--scale FLOAT" in text
  assert "the weight of the ascended loss. (default: 1.0)" in text
  assert "gradient_ascent Ascend the forget loss" in text   # the list of methods
  work = tmp_path / "run"
  out = _cli(["unlearn", *imports, "--checkpoint", trained, "--workdir", str(work),
              "--scale", "2", "--no-remain", "--relearn-epochs", "0", "--no-mia",
              "--eval-limit", "200", "--quiet"], user_package)
  assert out.returncode == 0, out.stderr
  config = json.loads((work / "config.json").read_text())
  assert config["method"] == {"name": "gradient_ascent", "epochs": 2, "lr": 0.005,
                              "batch_size": 32, "momentum": None, "weight_decay": None,
                              "scale": 2.0}
  records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
  assert [r["phase"] for r in records] == ["original", "edit", "finetune", "finetune"]
  # Ascent raised the forget loss (from ~0.1 on the trained model).
  assert records[-1]["forget_train_loss"] > 3 * records[0]["forget_train_loss"]
  assert out.stdout.startswith("gradient_ascent:")
  # The same command again finds the finished run; another scale is another run.
  again = _cli(["unlearn", *imports, "--checkpoint", trained, "--workdir", str(work),
                "--scale", "3", "--no-remain", "--relearn-epochs", "0", "--no-mia",
                "--eval-limit", "200", "--quiet"], user_package)
  assert again.returncode == 2 and "different config" in again.stderr


def test_an_installed_packages_method_is_found_by_its_entry_point(user_package):
  info = user_package / "my_unlearning-1.0.dist-info"
  info.mkdir()
  (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-unlearning\nVersion: 1.0\n")
  (info / "entry_points.txt").write_text(
      f"[{methods.ENTRY_POINT_GROUP}]\ngradient_ascent = my_unlearning:GradientAscent\n")
  helped = _cli(["unlearn", "--method", "gradient_ascent", "--help"], user_package)
  assert helped.returncode == 0, helped.stderr
  assert "--scale" in helped.stdout
  (info / "entry_points.txt").write_text(
      f"[{methods.ENTRY_POINT_GROUP}]\nbroken = my_unlearning_missing:Thing\n")
  broken = _cli(["unlearn", "--method", "finetune", "--help"], user_package)
  assert broken.returncode == 2
  assert "entry point 'broken' (my_unlearning_missing:Thing) fails to load" in broken.stderr


def test_a_missing_import_is_one_line_naming_it(tmp_path):
  out = _cli(["unlearn", "--import", "no_such_module_here", "--method", "x", "--help"],
             tmp_path)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: --import no_such_module_here: cannot import it (No module named "
      "'no_such_module_here'); is it on PYTHONPATH or installed in this environment?"]


def test_register_refuses_what_cannot_be_a_method():
  class Plain(methods.Method):
    name: ClassVar[str] = "plain"
  with pytest.raises(ValueError, match="decorate it with @dataclasses.dataclass"):
    methods.register(Plain)

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Taken(methods.FineTuned):
    name: ClassVar[str] = "fisher_mask"
  with pytest.raises(ValueError, match="method name 'fisher_mask' is taken by "
                                       "fmjax.methods.fisher_mask.FisherMask"):
    methods.register(Taken)

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Nameless(methods.FineTuned):
    pass
  with pytest.raises(ValueError, match="set the class attribute name"):
    methods.register(Nameless)
  with pytest.raises(ValueError, match="register takes a subclass of fmjax.methods.Method"):
    methods.register(dict)
  assert "plain" not in methods.registry() and methods.registry()["fisher_mask"] is (
      methods.FisherMask)


def test_a_method_without_a_procedure_says_what_to_derive():
  @dataclasses.dataclass(frozen=True, kw_only=True)
  class EditOnly(methods.Method):
    name: ClassVar[str] = "edit_only"
  with pytest.raises(NotImplementedError, match="derive FineTuned for the shared fine-tuning"):
    EditOnly().procedure(None, methods.Budget(1, 0.1, 8))


def test_a_users_method_owns_its_data_dependent_default(monkeypatch):
  """A user's method leaves a setting to the data (None) and fills it in ``for_data``,
  after its bases' (a MaskMethod's ratio): make_config records both, a given value wins."""
  from fmjax import data
  from fmjax.unlearning import make_config

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class PerClass(methods.MaskMethod):
    """Zero nothing, per class.

    Attributes:
      per_class: examples per class to score; None: the data's (2 per 10 classes).
    """
    name: ClassVar[str] = "per_class"
    per_class: int | None = None

    def for_data(self, info):
      return methods.fill_none(super().for_data(info), per_class=info.num_classes // 5)

  monkeypatch.setattr(methods.base, "_REGISTRY", dict(methods.base._REGISTRY))  # undone after
  methods.register(PerClass)
  tiny = make_config("/nowhere", "per_class", dataset="tiny_imagenet").method
  assert (tiny.per_class, tiny.ratio) == (40, 0.04)   # its own default and its base's
  cifar = make_config("/nowhere", PerClass(per_class=3), dataset="cifar10").method
  assert (cifar.per_class, cifar.ratio) == (3, 0.02)
  assert PerClass().for_data(data.DATASETS["digits"]) == PerClass(per_class=2, ratio=0.04)
  assert make_config("/nowhere", "per_class", dataset="digits",
                     per_class=7).to_json()["method"]["per_class"] == 7

