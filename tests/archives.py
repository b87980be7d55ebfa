"""Tiny datasets written byte for byte in the formats users download.

Each writer produces the file layout of the official distribution, with a
few random images instead of thousands, so the real readers and
tensorflow-datasets' own download-and-prepare run on them unchanged:

* CIFAR-10/100 "binary version" archives (``cifar-10-binary.tar.gz``,
  ``cifar-100-binary.tar.gz``): fixed-size records, the archives TFDS
  downloads.
* CIFAR-10/100 "python version" archives (``cifar-10-python.tar.gz``,
  ``cifar-100-python.tar.gz``): Python 2 pickles at protocol 2, written opcode
  by opcode as Python 2 and numpy 1.x wrote them (``str`` as BINSTRING,
  arrays through ``numpy.core.multiarray._reconstruct``), which is what the
  real archives hold and what Python 3's own pickler cannot produce.
* MNIST IDX files, gzipped (``train-images-idx3-ubyte.gz`` ...).
* A ``tiny-imagenet-200`` folder of JPEGs (train/<wnid>/images, val/images
  with ``val_annotations.txt``, ``wnids.txt``, ``words.txt``).

Run as ``python -m tests.archives KIND DEST`` to write one into DEST.
"""

from __future__ import annotations

import gzip
import io
import pathlib
import struct
import sys
import tarfile

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


class Arrays:
  """The content written, to compare with what a reader returns."""

  def __init__(self, train_x, train_y, test_x, test_y, names):
    self.train_x, self.train_y, self.test_x, self.test_y = train_x, train_y, test_x, test_y
    self.names = names


def _labels(n, k, offset=0):
  return ((np.arange(n) + offset) % k).astype(np.uint8)   # every class present


def _images(rng, labels, shape, k):
  """Learnable images: a fixed random template per class plus noise, so a model
  trained for one epoch on a few hundred of them already tells classes apart."""
  templates = np.random.default_rng(1234).integers(40, 216, (k, *shape))
  noise = rng.normal(0, 30, (len(labels), *shape))
  return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)


def _tar_gz(path: pathlib.Path, members: dict[str, bytes]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with tarfile.open(path, "w:gz") as tar:
    for name, raw in members.items():
      info = tarfile.TarInfo(name)
      info.size, info.mode = len(raw), 0o644
      tar.addfile(info, io.BytesIO(raw))


def _cifar_examples(cifar100: bool, n_train: int, n_test: int, seed: int):
  """Learnable CIFAR-shaped examples with every class present."""
  rng = np.random.default_rng(seed)
  k = 100 if cifar100 else 10
  train_y, test_y = _labels(n_train, k), _labels(n_test, k, 3)
  return (_images(rng, train_y, (32, 32, 3), k), train_y, _images(rng, test_y, (32, 32, 3), k),
          test_y)


def _write_members(dest: pathlib.Path, folder: str, archive_name: str | None,
                   members: dict[str, bytes]) -> None:
  """``members`` of ``folder`` as the archive ``archive_name``, or extracted when None."""
  if archive_name:
    _tar_gz(dest / archive_name, {f"{folder}/{m}": raw for m, raw in members.items()})
    return
  (dest / folder).mkdir(parents=True, exist_ok=True)
  for m, raw in members.items():
    (dest / folder / m).write_bytes(raw)


def _chw(images):
  """[N, H, W, C] -> the CIFAR row layout: [N, 3072] channel-major."""
  return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


# ---------------------------------------------------------------------------
# CIFAR binary version.

def cifar_binary(dest: pathlib.Path, *, cifar100: bool = False, n_train: int = 50,
                 n_test: int = 20, seed: int = 0, archive: bool = True) -> Arrays:
  """``cifar-10-binary.tar.gz`` (or ``cifar-100-binary.tar.gz``) in ``dest``;
  with ``archive=False`` the extracted folder instead."""
  train_x, train_y, test_x, test_y = _cifar_examples(cifar100, n_train, n_test, seed)

  def records(x, y):
    labels = [y[:, None]] if not cifar100 else [(y // 5)[:, None], y[:, None]]
    return np.concatenate(labels + [_chw(x)], axis=1).astype(np.uint8).tobytes()

  if cifar100:
    folder = "cifar-100-binary"
    names = [f"fine{i}" for i in range(100)]
    members = {"train.bin": records(train_x, train_y), "test.bin": records(test_x, test_y),
               "fine_label_names.txt": ("\n".join(names) + "\n").encode(),
               "coarse_label_names.txt": ("\n".join(f"coarse{i}" for i in range(20))
                                          + "\n").encode()}
  else:
    folder = "cifar-10-batches-bin"
    names = CIFAR10_NAMES
    per = np.array_split(np.arange(n_train), 5)
    members = {f"data_batch_{i + 1}.bin": records(train_x[p], train_y[p])
               for i, p in enumerate(per)}
    members["test_batch.bin"] = records(test_x, test_y)
    members["batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
  name = "cifar-100-binary.tar.gz" if cifar100 else "cifar-10-binary.tar.gz"
  _write_members(dest, folder, name if archive else None, members)
  return Arrays(train_x, train_y.astype(np.int32), test_x, test_y.astype(np.int32), names)


# ---------------------------------------------------------------------------
# CIFAR python version: Python 2 pickles, protocol 2.

class _Py2Pickle:
  """Writes the subset of protocol 2 that the CIFAR batches use, as Python 2
  with numpy 1.x wrote it: dicts, lists, ints, ``str`` (bytes here, written as
  BINSTRING), None, bools and uint8 ndarrays."""

  def __init__(self):
    self.out = io.BytesIO()

  def dump(self, obj) -> bytes:
    self.out.write(b"\x80\x02")          # PROTO 2
    self._obj(obj)
    self.out.write(b".")                  # STOP
    return self.out.getvalue()

  def _global(self, module: str, name: str):
    self.out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

  def _obj(self, obj):
    w = self.out.write
    if obj is None:
      w(b"N")
    elif obj is True or obj is False:
      w(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int | np.integer):
      obj = int(obj)
      if 0 <= obj < 256:
        w(b"K" + bytes([obj]))
      else:
        w(b"J" + struct.pack("<i", obj))
    elif isinstance(obj, bytes):
      if len(obj) < 256:
        w(b"U" + bytes([len(obj)]) + obj)    # SHORT_BINSTRING: a Python 2 str
      else:
        w(b"T" + struct.pack("<I", len(obj)) + obj)
    elif isinstance(obj, tuple):
      w(b"(")
      for item in obj:
        self._obj(item)
      w(b"t")
    elif isinstance(obj, list):
      w(b"](")
      for item in obj:
        self._obj(item)
      w(b"e")
    elif isinstance(obj, dict):
      w(b"}(")
      for key, value in obj.items():
        self._obj(key)
        self._obj(value)
      w(b"u")
    elif isinstance(obj, np.ndarray):
      if obj.dtype != np.uint8:
        raise TypeError("only uint8 arrays, as in the CIFAR batches")
      # numpy 1.x: _reconstruct(ndarray, (0,), 'b') then __setstate__.
      self._global("numpy.core.multiarray", "_reconstruct")
      self._global("numpy", "ndarray")
      self._obj((0,))
      self._obj(b"b")
      w(b"\x87R")                            # TUPLE3, REDUCE
      w(b"(")                                # state tuple
      self._obj(1)
      self._obj(tuple(obj.shape))
      self._global("numpy", "dtype")
      self._obj((b"u1", 0, 1))
      w(b"R")
      self._obj((3, b"|", None, None, None, -1, -1, 0))
      w(b"b")                                # BUILD the dtype
      self._obj(False)
      self._obj(np.ascontiguousarray(obj).tobytes())
      w(b"tb")                               # TUPLE, BUILD the array
    else:
      raise TypeError(f"cannot write {type(obj).__name__} as a Python 2 pickle")


def py2_pickle(obj) -> bytes:
  """``obj`` as Python 2's ``cPickle.dump(obj, f, 2)`` wrote it."""
  return _Py2Pickle().dump(obj)


def cifar_python(dest: pathlib.Path, *, cifar100: bool = False, n_train: int = 50,
                 n_test: int = 20, seed: int = 0, archive: bool = True) -> Arrays:
  """``cifar-10-python.tar.gz`` (or ``cifar-100-python.tar.gz``) in ``dest``;
  with ``archive=False`` the extracted folder instead."""
  train_x, train_y, test_x, test_y = _cifar_examples(cifar100, n_train, n_test, seed)

  def batch(label, x, y):
    files = [f"img_{i:05d}.png".encode() for i in range(len(y))]
    body = {b"batch_label": label.encode(), b"filenames": files, b"data": _chw(x)}
    if cifar100:
      body.update({b"fine_labels": [int(v) for v in y],
                   b"coarse_labels": [int(v) // 5 for v in y]})
    else:
      body[b"labels"] = [int(v) for v in y]
    return py2_pickle(body)

  if cifar100:
    folder = "cifar-100-python"
    names = [f"fine{i}" for i in range(100)]
    members = {"train": batch("training batch 1 of 1", train_x, train_y),
               "test": batch("testing batch 1 of 1", test_x, test_y),
               "meta": py2_pickle({b"fine_label_names": [n.encode() for n in names],
                                   b"coarse_label_names": [f"coarse{i}".encode()
                                                           for i in range(20)]})}
  else:
    folder = "cifar-10-batches-py"
    names = CIFAR10_NAMES
    per = np.array_split(np.arange(n_train), 5)
    members = {f"data_batch_{i + 1}": batch(f"training batch {i + 1} of 5", train_x[p],
                                            train_y[p]) for i, p in enumerate(per)}
    members["test_batch"] = batch("testing batch 1 of 1", test_x, test_y)
    members["batches.meta"] = py2_pickle({b"label_names": [n.encode() for n in names],
                                          b"num_cases_per_batch": 10000, b"num_vis": 3072})
    members["readme.html"] = b"<html></html>"
  name = "cifar-100-python.tar.gz" if cifar100 else "cifar-10-python.tar.gz"
  _write_members(dest, folder, name if archive else None, members)
  return Arrays(train_x, train_y.astype(np.int32), test_x, test_y.astype(np.int32), names)


# ---------------------------------------------------------------------------
# MNIST IDX files.

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx_bytes(array: np.ndarray) -> bytes:
  """An IDX file of unsigned bytes: magic 0x00000803 (images) or 0x00000801 (labels)."""
  array = np.asarray(array, np.uint8)
  return bytes([0, 0, 0x08, array.ndim]) + b"".join(
      struct.pack(">I", d) for d in array.shape) + array.tobytes()


def mnist_idx(dest: pathlib.Path, *, n_train: int = 60, n_test: int = 20,
              seed: int = 0) -> Arrays:
  """The four gzipped IDX files of MNIST (or Fashion-MNIST) in ``dest``."""
  rng = np.random.default_rng(seed)
  train_y, test_y = _labels(n_train, 10), _labels(n_test, 10, 3)
  train_x, test_x = _images(rng, train_y, (28, 28), 10), _images(rng, test_y, (28, 28), 10)
  dest.mkdir(parents=True, exist_ok=True)
  for name, array in zip(MNIST_FILES, (train_x, train_y, test_x, test_y), strict=True):
    # mtime=0: the same bytes every time, so checksums are stable.
    with open(dest / name, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
      gz.write(idx_bytes(array))
  return Arrays(train_x[..., None], train_y.astype(np.int32), test_x[..., None],
                test_y.astype(np.int32), [str(i) for i in range(10)])


# ---------------------------------------------------------------------------
# Tiny-ImageNet folder.

def tiny_imagenet(dest: pathlib.Path, *, classes: int = 200, per_class: int = 2,
                  n_val: int = 200, seed: int = 0) -> Arrays:
  """A ``tiny-imagenet-200`` folder in ``dest`` with ``per_class`` training JPEGs
  per class and ``n_val`` validation JPEGs. JPEG is lossy: the returned arrays
  are the images as decoded back, which is what a reader must return."""
  from PIL import Image

  rng = np.random.default_rng(seed)
  root = dest / "tiny-imagenet-200"
  wnids = [f"n{1440764 + 17 * i:08d}" for i in range(classes)]
  (root / "val" / "images").mkdir(parents=True, exist_ok=True)
  (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
  (root / "words.txt").write_text("".join(f"{w}\tthing {i}, other name\n"
                                          for i, w in enumerate(wnids)))

  def write(path, pixels):
    # Smooth images survive JPEG well; the reader is compared with the decoded file.
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)
    return np.asarray(Image.open(path).convert("RGB"))

  def smooth():
    base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 16, 0), 16, 1)

  train_x, train_y = [], []
  for c, wnid in enumerate(wnids):
    folder = root / "train" / wnid / "images"
    folder.mkdir(parents=True, exist_ok=True)
    boxes = []
    for j in range(per_class):
      name = f"{wnid}_{j}.JPEG"
      train_x.append(write(folder / name, smooth()))
      train_y.append(c)
      boxes.append(f"{name}\t0\t0\t63\t63\n")
    (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
  val_x, val_y, lines = [], [], []
  for j in range(n_val):
    c = j % classes
    name = f"val_{j}.JPEG"
    val_x.append(write(root / "val" / "images" / name, smooth()))
    val_y.append(c)
    lines.append(f"{name}\t{wnids[c]}\t0\t0\t63\t63\n")
  (root / "val" / "val_annotations.txt").write_text("".join(lines))
  return Arrays(np.stack(train_x), np.asarray(train_y, np.int32), np.stack(val_x),
                np.asarray(val_y, np.int32), [f"thing {i}" for i in range(classes)])


WRITERS = {
    "cifar10-binary": lambda d: cifar_binary(d),
    "cifar100-binary": lambda d: cifar_binary(d, cifar100=True),
    "cifar10-python": lambda d: cifar_python(d),
    "cifar100-python": lambda d: cifar_python(d, cifar100=True),
    "mnist": lambda d: mnist_idx(d),
    "tiny-imagenet": lambda d: tiny_imagenet(d),
}

if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] not in WRITERS:
    sys.exit(f"usage: python -m tests.archives {{{','.join(WRITERS)}}} DEST")
  WRITERS[sys.argv[1]](pathlib.Path(sys.argv[2]))
