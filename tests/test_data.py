"""Datasets from every source format, splits and their bad inputs."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fmjax import data
from tests import archives


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
  rng = np.random.default_rng(0)
  d = tmp_path / "mnist"
  d.mkdir()
  train_x, test_x = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 256, (7, 28, 28))
  train_y, test_y = np.arange(20) % 10, np.arange(7) % 10
  _write_idx(d / "train-images-idx3-ubyte.gz", train_x)
  _write_idx(d / "train-labels-idx1-ubyte.gz", train_y)
  _write_idx(d / "t10k-images-idx3-ubyte.gz", test_x)
  _write_idx(d / "t10k-labels-idx1-ubyte.gz", test_y)
  return tmp_path, train_x, train_y, test_x, test_y


def test_idx_files(idx_dir):
  root, train_x, train_y, test_x, test_y = idx_dir
  ds = data.load_dataset("mnist", root)
  assert ds.train_images.shape == (20, 28, 28, 1) and ds.train_images.dtype == np.uint8
  np.testing.assert_array_equal(ds.train_images[..., 0], train_x)
  np.testing.assert_array_equal(ds.test_labels, test_y)
  assert ds.train_labels.dtype == np.int32 and ds.num_classes == 10


def test_data_dir_from_environment(idx_dir, monkeypatch):
  monkeypatch.setenv(data.DATA_DIR_ENV, str(idx_dir[0]))
  assert data.load_dataset("mnist").source == str(idx_dir[0] / "mnist")


def _cifar_arrays(n, rng):
  images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
  return images, (np.arange(n) % 10).astype(np.int64)


def test_cifar_python_tarball(tmp_path):
  rng = np.random.default_rng(1)
  parts = {f"data_batch_{i}": _cifar_arrays(4, rng) for i in range(1, 6)}
  parts["test_batch"] = _cifar_arrays(3, rng)
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    def add(name, obj):
      raw = pickle.dumps(obj)
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(raw)
      tar.addfile(info, io.BytesIO(raw))
    for name, (x, y) in parts.items():
      add(name, {b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"labels": list(y)})
    add("batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
  (tmp_path / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
  ds = data.load_dataset("cifar10", tmp_path)
  want = np.concatenate([parts[f"data_batch_{i}"][0] for i in range(1, 6)])
  np.testing.assert_array_equal(ds.train_images, want)
  np.testing.assert_array_equal(ds.test_images, parts["test_batch"][0])
  assert ds.class_names[:2] == ("c0", "c1") and len(ds.train_labels) == 20


@pytest.mark.parametrize("cifar100", [False, True], ids=["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [True, False], ids=["tar.gz", "folder"])
def test_cifar_python_version_as_distributed(tmp_path, cifar100, archive):
  """Python 2 protocol-2 pickles of numpy 1.x arrays: the official archives' bytes."""
  written = archives.cifar_python(tmp_path, cifar100=cifar100, archive=archive)
  name = "cifar100" if cifar100 else "cifar10"
  ds = data.load_dataset(name, tmp_path, source="local")
  folder = "cifar-100-python" if cifar100 else "cifar-10-batches-py"
  assert ds.source == str(tmp_path / (folder if not archive else folder.replace(
      "-batches-py", "-python") + ".tar.gz"))
  np.testing.assert_array_equal(ds.train_images, written.train_x)
  np.testing.assert_array_equal(ds.train_labels, written.train_y)
  np.testing.assert_array_equal(ds.test_images, written.test_x)
  np.testing.assert_array_equal(ds.test_labels, written.test_y)
  assert list(ds.class_names) == written.names


def test_py2_pickle_writer_matches_python_pickle_semantics():
  # The hand-written protocol-2 stream loads with the standard unpickler as
  # Python 2 data does: str -> bytes under encoding='bytes'.
  x = np.arange(12, dtype=np.uint8).reshape(3, 4)
  obj = pickle.loads(archives.py2_pickle({b"data": x, b"labels": [1, 300, 2]}),
                     encoding="bytes")
  np.testing.assert_array_equal(obj[b"data"], x)
  assert obj[b"labels"] == [1, 300, 2]


@pytest.mark.parametrize("cifar100", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_binary_version_as_distributed(tmp_path, cifar100):
  written = archives.cifar_binary(tmp_path, cifar100=cifar100, archive=False)
  ds = data.load_dataset("cifar100" if cifar100 else "cifar10", tmp_path)
  np.testing.assert_array_equal(ds.train_images, written.train_x)
  np.testing.assert_array_equal(ds.train_labels, written.train_y)   # CIFAR-100: fine labels
  np.testing.assert_array_equal(ds.test_images, written.test_x)
  assert list(ds.class_names) == written.names


def test_mnist_idx_as_distributed(tmp_path):
  written = archives.mnist_idx(tmp_path / "mnist")
  ds = data.load_dataset("mnist", tmp_path)
  np.testing.assert_array_equal(ds.train_images, written.train_x)
  np.testing.assert_array_equal(ds.test_labels, written.test_y)


def test_tiny_imagenet_folder_of_jpegs(tmp_path):
  written = archives.tiny_imagenet(tmp_path, classes=5, per_class=3, n_val=7)
  ds = data.load_dataset("tiny_imagenet", tmp_path)
  assert ds.image_shape == (64, 64, 3) and ds.num_classes == 5
  np.testing.assert_array_equal(ds.train_images, written.train_x)
  np.testing.assert_array_equal(ds.train_labels, written.train_y)
  np.testing.assert_array_equal(ds.test_images, written.test_x)
  np.testing.assert_array_equal(ds.test_labels, written.test_y)
  assert list(ds.class_names) == written.names


def test_cifar_pickle_with_code_is_refused(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()

  class Evil:
    def __reduce__(self):
      return (print, ("pwned",))

  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
    (folder / name).write_bytes(pickle.dumps({b"data": Evil()}))
  with pytest.raises(ValueError, match=r"data_batch_1: refused for safety.*refusing to load "
                     r"builtins\.print.*cifar-10-binary\.tar\.gz"):
    data.load_dataset("cifar10", tmp_path)


def test_cifar100_binary(tmp_path):
  rng = np.random.default_rng(2)
  d = tmp_path / "cifar-100-binary"
  d.mkdir()
  for name, n in (("train.bin", 6), ("test.bin", 2)):
    x, _ = _cifar_arrays(n, rng)
    coarse, fine = np.arange(n) % 20, (np.arange(n) * 7) % 100
    rec = np.concatenate([coarse[:, None], fine[:, None],
                          x.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1).astype(np.uint8)
    rec.tofile(d / name)
    if name == "train.bin":
      train_x, train_fine = x, fine
  ds = data.load_dataset("cifar100", tmp_path)
  np.testing.assert_array_equal(ds.train_images, train_x)
  np.testing.assert_array_equal(ds.train_labels, train_fine)


def test_tfds_mock_data(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    ds = data.load_dataset("cifar10", tmp_path, source="tfds")
  assert ds.train_images.shape == (12, 32, 32, 3) and ds.train_images.dtype == np.uint8
  assert ds.train_labels.shape == (12,) and ds.num_classes == 10
  assert ds.source.startswith("tfds:cifar10")


def test_digits():
  ds = data.load_dataset("digits")
  assert ds.train_images.shape[1:] == (8, 8, 1) and len(ds.train_labels) + len(
      ds.test_labels) == 1797
  assert ds.train_images.max() == 255
  assert set(np.unique(ds.test_labels)) == set(range(10))


def test_missing_dataset_names_the_commands(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"make data DATASET=cifar10.*\n.*cifar-10"):
    data.load_dataset("cifar10", tmp_path)
  with pytest.raises(FileNotFoundError, match="tiny-imagenet-200"):
    data.load_dataset("tiny_imagenet", tmp_path)
  assert not (tmp_path / "tfds").exists()  # a failed lookup writes nothing


def test_unknown_dataset():
  with pytest.raises(ValueError, match=r"valid names: \['cifar10', 'cifar100', 'digits'"):
    data.load_dataset("svhn")


class TestSplits:
  labels = np.array([0, 1, 2, 0, 1, 2, 0, 3, 3, 1])

  def test_class_split(self):
    split = data.class_split(self.labels, 0)
    np.testing.assert_array_equal(split.forget, [0, 3, 6])
    assert len(split.forget) + len(split.remain) == 10
    assert set(self.labels[split.remain]) == {1, 2, 3}
    two = data.class_split(self.labels, [0, 3])
    np.testing.assert_array_equal(two.forget, [0, 3, 6, 7, 8])

  def test_class_not_in_data(self):
    with pytest.raises(ValueError, match=r"forget class\(es\) \[7\] not in the data.*\[0, 1"):
      data.class_split(self.labels, 7)

  def test_outliers(self):
    labels = np.arange(1000) % 10
    split = data.outlier_split(labels, 0.3, seed=0)
    assert len(split.forget) == 300 and len(split.remain) == 700
    np.testing.assert_array_equal(split.true_labels, labels[split.forget])
    np.testing.assert_array_equal(split.labels[split.remain], labels[split.remain])
    # Shuffled within the group: same label counts, most labels changed.
    np.testing.assert_array_equal(np.bincount(split.labels[split.forget], minlength=10),
                                  np.bincount(labels[split.forget], minlength=10))
    assert np.mean(split.labels[split.forget] != labels[split.forget]) > 0.8
    again = data.outlier_split(labels, 0.3, seed=0)
    np.testing.assert_array_equal(again.labels, split.labels)
    assert not np.array_equal(data.outlier_split(labels, 0.3, seed=1).forget, split.forget)

  @pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5])
  def test_outlier_fraction_outside_unit_interval(self, fraction):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
      data.outlier_split(np.arange(100) % 10, fraction, seed=0)

  def test_limited_subset(self):
    remain = data.class_split(self.labels, 0).remain
    sub = data.limited_subset(remain, 4, seed=3)
    assert len(sub) == 4 and set(sub) <= set(remain)
    np.testing.assert_array_equal(sub, data.limited_subset(remain, 4, seed=3))
    with pytest.raises(ValueError, match="cannot draw k=50"):
      data.limited_subset(remain, 50, seed=0)


def test_augment_keeps_shape_and_content():
  import jax
  import jax.numpy as jnp
  images = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.uint8).reshape(2, 6, 6, 1)
  out = data.augment(jax.random.key(0), images, pad=2)
  assert out.shape == images.shape and out.dtype == images.dtype
  unchanged = data.augment(jax.random.key(0), images, pad=0, flip=False)
  np.testing.assert_array_equal(unchanged, images)


def test_files_of_another_dataset_are_named(tmp_path):
  d = tmp_path / "mnist"
  d.mkdir()
  rng = np.random.default_rng(0)
  _write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 32, 32)))
  _write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(4))
  _write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (2, 32, 32)))
  _write_idx(d / "t10k-labels-idx1-ubyte.gz", np.arange(2))
  with pytest.raises(ValueError, match=r"mnist images are \(28, 28, 1\), but the train images "
                     r"found there are \(32, 32, 1\); is it another dataset\?"):
    data.load_dataset("mnist", tmp_path)


# --- damaged files: one line naming the file, what is wrong and how to get a good copy ---------

def _truncate(path, keep=0.5):
  raw = path.read_bytes()
  path.write_bytes(raw[:int(len(raw) * keep)])


def _bad_crc(path):
  raw = bytearray(path.read_bytes())
  raw[-8] ^= 0xFF   # the gzip trailer's CRC-32
  path.write_bytes(bytes(raw))


def _short_labels(path):
  with gzip.open(path, "rb") as f:
    labels = np.frombuffer(f.read()[8:], np.uint8)
  _write_idx(path, labels[:-1])


def _object_batch(path):
  folder = path.parent
  body = {b"batch_label": b"training batch 1 of 5", b"labels": [0] * 10,
          b"data": np.array([[0] * 3072] * 10, dtype=object)}
  (folder / "data_batch_1").write_bytes(pickle.dumps(body, protocol=2))


def _mnist(root):
  archives.mnist_idx(root / "mnist")


def _cifar_tar(root):
  archives.cifar_python(root)


def _cifar_folder(root):
  archives.cifar_python(root, archive=False)


def _cifar_bin(root):
  archives.cifar_binary(root, archive=False)


DAMAGED = {   # dataset, writer, the file damaged, how, what the message says is wrong
    "gz truncated": ("mnist", _mnist, "mnist/train-images-idx3-ubyte.gz", _truncate,
                     "cannot be read (EOFError"),
    "gz bad CRC": ("mnist", _mnist, "mnist/t10k-labels-idx1-ubyte.gz", _bad_crc,
                   "cannot be read (BadGzipFile: CRC check failed"),
    "label count": ("mnist", _mnist, "mnist/train-labels-idx1-ubyte.gz", _short_labels,
                    "holds 59 labels for the 60 images of train-images-idx3-ubyte.gz"),
    "tar.gz random bytes": ("cifar10", _cifar_tar, "cifar-10-python.tar.gz",
                            lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
                            "not a readable .tar.gz (ReadError"),
    "tar.gz truncated": ("cifar10", _cifar_tar, "cifar-10-python.tar.gz", _truncate,
                         "not a readable .tar.gz"),
    "binary wrong size": ("cifar10", _cifar_bin, "cifar-10-batches-bin/data_batch_1.bin",
                          lambda p: p.write_bytes(p.read_bytes()[:-100]),
                          "not a whole number of 3073-byte records"),
    "pickle object array": ("cifar10", _cifar_folder, "cifar-10-batches-py/data_batch_1",
                            _object_batch, "its 'data' is object (10, 3072), expected uint8"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_data_file_is_refused_by_name_before_any_work_directory(tmp_path, capsys,
                                                                          case):
  """``python -m fmjax train`` on a damaged copy: exit 2, one line (the file, what is wrong,
  how to get a good one), and no work directory."""
  from fmjax import __main__ as cli
  name, write, damaged, damage, problem = DAMAGED[case]
  root = tmp_path / "data"
  write(root)
  damage(root / damaged)
  workdir = tmp_path / "run"
  rc = cli.main(["train", "--dataset", name, "--model", "small_cnn", "--epochs", "1",
                 "--data-dir", str(root), "--workdir", str(workdir), "--quiet"])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and len(err.splitlines()) == 1, err
  assert err.startswith(f"error: {root / damaged}") and problem in err, err
  assert "Delete it and get a good copy: " in err and "Traceback" not in err
  assert not workdir.exists()
