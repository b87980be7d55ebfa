"""The data-preparation path as users run it: tensorflow-datasets' own
download-and-prepare on archives in the official formats, read back as fmjax
reads, and the make targets end to end on the result.

These tests need TensorFlow (the ``prepare`` extra): ``make test-prepare``
runs them, and CI runs that target after ``make test``.

No network is used. The tiny archives of :mod:`tests.archives` go through
TFDS's download manager exactly as a downloaded or hand-placed file does (its
manual folder, then extraction, checksum check and the builder's own
``_generate_examples``). Two things are substituted, both registry data, not
code paths: the registered size/SHA-256 of each archive (TFDS's checksum
file, here computed from the tiny archive, so the check still runs and
passes), and, for MNIST only, the example counts that TFDS's MNIST builder
hard-codes (60,000 / 10,000).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from fmjax import data
from tests import archives

pytestmark = pytest.mark.prepare
tf = pytest.importorskip("tensorflow", reason="needs the prepare extra (make test-prepare)")
tfds = pytest.importorskip("tensorflow_datasets")

from tensorflow_datasets.core.download import checksums  # noqa: E402
from tensorflow_datasets.image_classification import cifar, mnist  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"


def register(monkeypatch, builder_cls, files: dict[str, pathlib.Path]) -> None:
  """Registers each tiny archive's real size and SHA-256 as TFDS's checksum for its URL."""
  infos = {url: dataclasses.replace(checksums.compute_url_info(path), filename=path.name)
           for url, path in files.items()}
  monkeypatch.setattr(builder_cls, "url_infos", infos)


def rows(images, labels):
  """Examples as a sorted list of (label, bytes): TFDS shuffles the order it stores."""
  return sorted((int(y), np.asarray(x, np.uint8).tobytes()) for x, y in
                zip(images, labels, strict=True))


def assert_same_examples(ds, written):
  assert ds.train_images.dtype == np.uint8 and ds.train_images.ndim == 4
  assert rows(ds.train_images, ds.train_labels) == rows(written.train_x, written.train_y)
  assert rows(ds.test_images, ds.test_labels) == rows(written.test_x, written.test_y)
  assert list(ds.class_names) == list(written.names)


def prepare_cifar10(root: pathlib.Path, monkeypatch, **sizes) -> archives.Arrays:
  manual = root / "archives"
  written = archives.cifar_binary(manual, **sizes)
  register(monkeypatch, cifar.Cifar10, {CIFAR10_URL: manual / "cifar-10-binary.tar.gz"})
  assert data.prepare_tfds("cifar10", root, archives=manual) == root / "tfds"
  return written


def test_cifar10_binary_archive_through_tfds(tmp_path, monkeypatch):
  written = prepare_cifar10(tmp_path, monkeypatch)
  ds = data.load_dataset("cifar10", tmp_path)
  assert ds.source == f"tfds:cifar10 in {tmp_path / 'tfds'}"
  assert_same_examples(ds, written)
  # A second prepare finds the copy and downloads nothing.
  assert data.prepare_tfds("cifar10", tmp_path, archives=tmp_path / "nowhere") == tmp_path / "tfds"


def test_cifar100_binary_archive_through_tfds(tmp_path, monkeypatch):
  manual = tmp_path / "tfds" / "downloads" / "manual"   # the default place: no --archives
  written = archives.cifar_binary(manual, cifar100=True, n_train=120, n_test=30)
  register(monkeypatch, cifar.Cifar100, {CIFAR100_URL: manual / "cifar-100-binary.tar.gz"})
  data.prepare_tfds("cifar100", tmp_path)
  ds = data.load_dataset("cifar100", tmp_path)
  assert ds.source.startswith("tfds:cifar100") and ds.num_classes == 100
  assert_same_examples(ds, written)   # the fine labels


def test_mnist_idx_files_through_tfds(tmp_path, monkeypatch):
  manual = tmp_path / "archives"
  written = archives.mnist_idx(manual, n_train=60, n_test=20)
  register(monkeypatch, mnist.MNIST, {MNIST_URL + f: manual / f for f in archives.MNIST_FILES})
  monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", 60)
  monkeypatch.setattr(mnist, "_TEST_EXAMPLES", 20)
  data.prepare_tfds("mnist", tmp_path, archives=manual)
  ds = data.load_dataset("mnist", tmp_path)
  assert ds.source.startswith("tfds:mnist") and ds.image_shape == (28, 28, 1)
  assert_same_examples(ds, written)


def test_local_files_come_before_the_tfds_copy(tmp_path, monkeypatch):
  prepare_cifar10(tmp_path, monkeypatch)
  local = archives.cifar_binary(tmp_path, n_train=15, n_test=5, seed=9, archive=False)
  ds = data.load_dataset("cifar10", tmp_path)
  assert ds.source == str(tmp_path / "cifar-10-batches-bin")
  assert_same_examples(ds, local)
  assert data.load_dataset("cifar10", tmp_path, source="tfds").source.startswith("tfds:")


def test_archive_with_a_wrong_checksum_is_refused_clearly(tmp_path):
  # Not registered: TFDS compares the tiny archive with the real one's SHA-256.
  manual = tmp_path / "archives"
  archives.cifar_binary(manual)
  with pytest.raises(data.PrepareError, match=r"(?s)does not match its registered checksum.*"
                     r"cifar-10-binary\.tar\.gz.*Or skip tensorflow-datasets"):
    data.prepare_tfds("cifar10", tmp_path, archives=manual)


def _cli(args, env=None, cwd=REPO):
  return subprocess.run([sys.executable, "-m", "fmjax", *args], capture_output=True, text=True,
                        env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


@pytest.mark.parametrize("name,url", [("cifar10", CIFAR10_URL),
                                      ("mnist", MNIST_URL + "t10k-images-idx3-ubyte.gz")])
def test_no_network_is_one_clean_error(tmp_path, name, url):
  # A proxy on a closed local port: every connection fails at once, network or not.
  closed = "http://127.0.0.1:9"
  env = {"HTTPS_PROXY": closed, "HTTP_PROXY": closed, "https_proxy": closed,
         "http_proxy": closed, "NO_PROXY": "", "no_proxy": ""}
  out = _cli(["data", "prepare", "--dataset", name, "--data-dir", str(tmp_path)], env)
  assert out.returncode == 2, out.stderr
  assert "Traceback" not in out.stderr
  assert f"could not prepare {name}: cannot reach" in out.stderr
  assert url in out.stderr
  assert str(tmp_path / "tfds" / "downloads" / "manual") in out.stderr
  assert not (tmp_path / "tfds" / name).exists()   # nothing half-prepared left behind


def test_make_data_check_reads_the_prepared_copy(tmp_path, monkeypatch):
  prepare_cifar10(tmp_path, monkeypatch)
  out = _cli(["data", "check", "--dataset", "cifar10", "--data-dir", str(tmp_path)])
  assert out.returncode == 0, out.stderr
  assert "cifar10: 50 train / 20 test images of shape (32, 32, 3), 10 classes, from tfds:" \
         in out.stdout


# ---------------------------------------------------------------------------
# The paper's configurations end to end, shrunk by overrides only (SMOKE=1).

# A hung run's limit, not a speed claim (the slow panels take tens of minutes here).
MAKE_TIMEOUT_S = 3000


def run_make(target: str, data_dir: pathlib.Path, workdir: pathlib.Path, **variables):
  args = ["make", "-C", str(REPO), target, "SMOKE=1", f"DATA_DIR={data_dir}",
          f"WORKDIR={workdir}"] + [f"{k}={v}" for k, v in variables.items()]
  env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
  # make in its own process group: on a timeout the whole group goes (killing make alone
  # left its Python child running for hours, orphaned, on a deleted directory).
  proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, start_new_session=True)
  try:
    out, err = proc.communicate(timeout=MAKE_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    raise
  return subprocess.CompletedProcess(args, proc.returncode, out, err)


def check_smoke_run(workdir: pathlib.Path, dataset: str, model: str):
  from experiments.class_removal import METHOD_NAMES

  config = json.loads((workdir / "config.json").read_text())
  original = config["originals"]["main"]
  assert (original["dataset"], original["model"]) == (dataset, model)
  assert original["train"] == {"epochs": 1, "train_limit": 320}
  assert config["seeds"] == [0]
  report = (workdir / "report.md").read_text()
  for method in METHOD_NAMES:
    assert f"| {method}" in report, method
    assert (workdir / "units" / f"{dataset}-{model}" / method / "seed0" / "summary.json").exists()
  assert (workdir / "figure.png").stat().st_size > 10_000
  return report


def test_make_cifar10_resnet20_smoke(tmp_path, monkeypatch):
  prepare_cifar10(tmp_path, monkeypatch, n_train=400, n_test=100)
  out = run_make("cifar10-resnet20", tmp_path, tmp_path / "run")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert "make[1]" not in out.stdout   # the prepared copy was found: no `make data`
  report = check_smoke_run(tmp_path / "run", "cifar10", "resnet20")
  print(report)


def test_make_salun_cifar10_smoke(tmp_path, monkeypatch):
  """SalUn's CIFAR-10 protocol end to end on tiny archives in the official format, by
  SMOKE=1 overrides only: its hold-out split, its forget sets at its seed, every setting."""
  from experiments import salun_recipe

  prepare_cifar10(tmp_path, monkeypatch, n_train=400, n_test=100)
  out = run_make("salun-cifar10", tmp_path, tmp_path / "run")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  workdir = tmp_path / "run"
  config = json.loads((workdir / "config.json").read_text())
  original = config["originals"]["main"]
  assert (original["dataset"], original["model"]) == ("cifar10", "resnet18")
  assert original["train"]["holdout_seed"] == 1 and original["train"]["augment"] is True
  assert original["train"]["epochs"] == 1 and config["seeds"] == [2]
  assert all(u["unlearn"]["split"] == "salun" for u in config["units"])
  report = (workdir / "report.md").read_text()
  for setting, _ in salun_recipe.SETTINGS:
    assert f"| {setting} | original (no unlearning) |" in report
    assert f"| {setting} | retrain |" in report and f"| {setting} | salun |" in report
  # SalUn's Table 1 beside the measured lines, in its format (value ± std (gap)).
  assert "## Beside the published table" in report and "compared cells lie outside" in report
  for setting in ("random 10%", "random 50%"):
    assert f"| {setting} | FT (SalUn's code) | measured |" in report
    assert f"| {setting} | SalUn | published (10 trials) |" in report
  unit = json.loads((workdir / "units" / "random_10" / "salun" / "seed2" /
                     "config.json").read_text())
  assert unit["split"] == "salun" and unit["seed"] == 2


# Figure 2's panels with 100 and 200 classes: FisherNoise's true Fisher costs one backward
# pass per scored example and class, 200 x 100 at the smoke's score_limit (over 14 minutes
# of GoogLeNet on 2 cores); the user's override (make SET=...) scores 10 examples.
BIG_LABEL_SPACE = "unlearn.score_limit=10"


@pytest.mark.slow
def test_make_class_removal_cifar100_googlenet_smoke(tmp_path, monkeypatch):
  manual = tmp_path / "tfds" / "downloads" / "manual"
  archives.cifar_binary(manual, cifar100=True, n_train=400, n_test=200)
  register(monkeypatch, cifar.Cifar100, {CIFAR100_URL: manual / "cifar-100-binary.tar.gz"})
  data.prepare_tfds("cifar100", tmp_path)
  out = run_make("class-removal", tmp_path, tmp_path / "run", DATASET="cifar100",
                 MODEL="googlenet", SET=BIG_LABEL_SPACE)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  check_smoke_run(tmp_path / "run", "cifar100", "googlenet")
  unit = tmp_path / "run" / "units" / "cifar100-googlenet" / "fisher_noise" / "seed0"
  assert json.loads((unit / "config.json").read_text())["method"]["score_limit"] == 10


@pytest.mark.slow
def test_make_class_removal_mnist_vgg16_smoke(tmp_path, monkeypatch):
  manual = tmp_path / "archives"
  archives.mnist_idx(manual, n_train=400, n_test=100)
  register(monkeypatch, mnist.MNIST, {MNIST_URL + f: manual / f for f in archives.MNIST_FILES})
  monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", 400)
  monkeypatch.setattr(mnist, "_TEST_EXAMPLES", 100)
  data.prepare_tfds("mnist", tmp_path, archives=manual)
  out = run_make("class-removal", tmp_path, tmp_path / "run", DATASET="mnist", MODEL="vgg16")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  check_smoke_run(tmp_path / "run", "mnist", "vgg16")


@pytest.mark.slow
def test_make_class_removal_tiny_imagenet_densenet_smoke(tmp_path):
  archives.tiny_imagenet(tmp_path, per_class=2, n_val=200)
  out = run_make("class-removal", tmp_path, tmp_path / "run", DATASET="tiny_imagenet",
                 MODEL="densenet", SET=BIG_LABEL_SPACE)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  check_smoke_run(tmp_path / "run", "tiny_imagenet", "densenet")
