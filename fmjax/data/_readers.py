"""Readers of the standard on-disk formats, with no network and no TensorFlow.

Each returns ``(train_images, train_labels, test_images, test_labels,
class_names)`` with uint8 images [N, H, W, C] and int32 labels [N].
"""

from __future__ import annotations

import gzip
import io
import pathlib
import pickle
import tarfile
import zlib

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]
# What a damaged compressed file or archive raises while it is read.
_UNREADABLE = (EOFError, gzip.BadGzipFile, zlib.error, tarfile.TarError, OSError)


class DamagedFile(ValueError):
  """A data file that cannot be what it claims: truncated, corrupt, the wrong size or
  holding the wrong kind of content. ``str()`` names the file and what is wrong;
  :func:`fmjax.data.load_dataset` adds how to get a good copy."""

  def __init__(self, path, problem: str):
    super().__init__(f"{path}: {problem}")
    self.path, self.problem = path, problem

IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads one IDX file (gzipped or not): the MNIST container format."""
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except _UNREADABLE as e:
    raise DamagedFile(path, f"cannot be read ({type(e).__name__}: {e})") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise DamagedFile(path, f"not an IDX file (bad magic number {data[:4]!r})")
  dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
           0x0E: ">f8"}.get(data[2])
  if dtype is None:
    raise DamagedFile(path, f"unknown IDX element type 0x{data[2]:02x}")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  body = len(data) - 4 - 4 * ndim
  if body < 0 or body % np.dtype(dtype).itemsize or body // np.dtype(dtype).itemsize != int(
      np.prod(shape)):
    raise DamagedFile(path, f"truncated or padded: its header says {shape}, its body holds "
                            f"{max(body, 0)} bytes")
  return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape)


def find_idx(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
  for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
    if (directory / name).exists():
      return directory / name
  return None


def read_idx_dir(directory: pathlib.Path, class_names: list[str]) -> Arrays:
  """MNIST / Fashion-MNIST: the four standard IDX files in one directory."""
  parts, paths = {}, {}
  for key, stem in IDX_FILES.items():
    path = find_idx(directory, stem)
    if path is None:
      raise FileNotFoundError(f"{directory} lacks {stem}.gz")
    parts[key], paths[key] = read_idx(path), path
  for split in ("train", "test"):
    images, labels = parts[f"{split}_images"], parts[f"{split}_labels"]
    if images.ndim != 3 or labels.ndim != 1:
      bad, want = ((f"{split}_images", "[N, H, W] images") if images.ndim != 3
                   else (f"{split}_labels", "[N] labels"))
      raise DamagedFile(paths[bad], f"holds an array of shape {parts[bad].shape}, expected "
                                    f"{want}")
    if len(images) != len(labels):
      raise DamagedFile(paths[f"{split}_labels"],
                        f"holds {len(labels)} labels for the {len(images)} images of "
                        f"{paths[f'{split}_images'].name}")
  return (parts["train_images"][..., None], parts["train_labels"].astype(np.int32),
          parts["test_images"][..., None], parts["test_labels"].astype(np.int32), class_names)


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles the CIFAR 'python version' batches: dicts, lists, bytes and numpy
  arrays only. Anything else would run code from the file, so it is refused."""

  _ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
              for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"),
                                                      ("_codecs", "encode")}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      # The archives were written by numpy 1.x (numpy.core); numpy 2 names it numpy._core.
      return super().find_class(module.replace("numpy.core.", "numpy._core."), name)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _load_batch(data: bytes, where: str) -> dict:
  try:
    batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
  except pickle.UnpicklingError as e:
    raise ValueError(
        f"{where}: refused for safety, it is not a CIFAR batch ({e}); unpickling it could run "
        "code. Replace it with the official archive, or use the binary version "
        "(cifar-10-binary.tar.gz), which needs no pickle.") from e
  except Exception as e:  # noqa: BLE001 -- any other failure to unpickle: not a batch
    raise DamagedFile(where, f"not a readable CIFAR batch ({type(e).__name__}: "
                             f"{str(e)[:120]})") from None
  if not isinstance(batch, dict):
    raise DamagedFile(where, f"not a CIFAR batch (a pickled {type(batch).__name__}, expected "
                             "a dict)")
  return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_arrays(batch: dict, label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
  """A CIFAR batch's images [N, 32, 32, 3] uint8 and labels [N], checked."""
  if "data" not in batch or label_key not in batch:
    raise DamagedFile(where, f"a CIFAR batch needs 'data' and {label_key!r}, it holds "
                             f"{sorted(map(str, batch))[:6]}")
  data = batch["data"]
  if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
          and data.shape[1] == 3072):
    what = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
            else type(data).__name__)
    raise DamagedFile(where, f"its 'data' is {what}, expected uint8 rows of 3072 pixels")
  try:
    labels = np.asarray(batch[label_key], np.int64)
  except (TypeError, ValueError) as e:
    raise DamagedFile(where, f"its {label_key!r} are not integers ({e})") from None
  if labels.shape != (len(data),):
    raise DamagedFile(where, f"holds {labels.size} labels for {len(data)} images")
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_python_files(source: pathlib.Path, names: list[str]) -> dict[str, bytes]:
  """Raw bytes of the named members of a CIFAR python tarball or folder."""
  if source.is_dir():
    return {n: (source / n).read_bytes() for n in names}
  out = {}
  try:
    with tarfile.open(source, "r:gz") as tar:
      for member in tar.getmembers():
        base = pathlib.PurePosixPath(member.name).name
        if base in names and member.isfile():
          out[base] = tar.extractfile(member).read()
  except _UNREADABLE as e:
    raise DamagedFile(source, f"not a readable .tar.gz ({type(e).__name__}: {e})") from None
  missing = set(names) - set(out)
  if missing:
    raise FileNotFoundError(f"{source} lacks {sorted(missing)}")
  return out


def read_cifar_python(source: pathlib.Path, coarse: bool = False, cifar100: bool = False
                      ) -> Arrays:
  """CIFAR-10/100 'python version' (tarball or extracted folder)."""
  if cifar100:
    names, label_key, meta_name = ["train", "test", "meta"], "fine_labels", "meta"
  else:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    label_key, meta_name = "labels", "batches.meta"
  def where(n):
    return f"{source}:{n}" if not source.is_dir() else str(source / n)

  raw = _cifar_python_files(source, names)
  batches = {n: _load_batch(raw[n], where(n)) for n in names}
  meta = batches.pop(meta_name)
  class_names = [c.decode() if isinstance(c, bytes) else c
                 for c in meta.get("fine_label_names", meta.get("label_names", []))]
  train_keys = ["train"] if cifar100 else names[:5]
  test_key = "test" if cifar100 else "test_batch"

  train = [_batch_arrays(batches[k], label_key, where(k)) for k in train_keys]
  test_x, test_y = _batch_arrays(batches[test_key], label_key, where(test_key))
  return (np.concatenate([x for x, _ in train]),
          np.concatenate([y for _, y in train]).astype(np.int32), test_x,
          test_y.astype(np.int32), class_names)


def read_cifar_binary(directory: pathlib.Path, cifar100: bool = False) -> Arrays:
  """CIFAR-10/100 'binary version': fixed-size records, no pickle."""
  label_bytes = 2 if cifar100 else 1
  if cifar100:
    train_files, test_files, meta = ["train.bin"], ["test.bin"], "fine_label_names.txt"
  else:
    train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
    test_files, meta = ["test_batch.bin"], "batches.meta.txt"

  record = label_bytes + 3072

  def read(files):
    parts = []
    for f in files:
      raw = np.fromfile(directory / f, np.uint8)
      if raw.size == 0 or raw.size % record:
        raise DamagedFile(directory / f, f"{raw.size} bytes, not a whole number of "
                                         f"{record}-byte records (truncated or another file)")
      parts.append(raw)
    records = np.concatenate(parts).reshape(-1, record)
    labels = records[:, label_bytes - 1].astype(np.int32)  # CIFAR-100: the fine label
    return records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels

  train_x, train_y = read(train_files)
  test_x, test_y = read(test_files)
  names_path = directory / meta
  names = ([n for n in names_path.read_text().split() if n] if names_path.exists()
           else [str(i) for i in range(int(train_y.max()) + 1)])
  return train_x, train_y, test_x, test_y, names


def read_tiny_imagenet(directory: pathlib.Path) -> Arrays:
  """The standard ``tiny-imagenet-200`` folder (train/<wnid>/images, val/)."""
  from PIL import Image

  wnids = (directory / "wnids.txt").read_text().split()
  index = {w: i for i, w in enumerate(wnids)}
  words = {}
  if (directory / "words.txt").exists():
    for line in (directory / "words.txt").read_text().splitlines():
      wnid, _, text = line.partition("\t")
      words[wnid] = text.split(",")[0]

  def load(path):
    return np.asarray(Image.open(path).convert("RGB"), np.uint8)

  train_x, train_y = [], []
  for wnid in wnids:
    for path in sorted((directory / "train" / wnid / "images").glob("*.JPEG")):
      train_x.append(load(path))
      train_y.append(index[wnid])
  test_x, test_y = [], []
  for line in (directory / "val" / "val_annotations.txt").read_text().splitlines():
    name, wnid = line.split("\t")[:2]
    test_x.append(load(directory / "val" / "images" / name))
    test_y.append(index[wnid])
  return (np.stack(train_x), np.asarray(train_y, np.int32), np.stack(test_x),
          np.asarray(test_y, np.int32), [words.get(w, w) for w in wnids])


def read_digits(test_fraction: float = 0.25) -> Arrays:
  """scikit-learn's bundled 8x8 digits (1,797 images), a fixed stratified split.

  Pixel values 0..16 are scaled to 0..255. The split keeps every 4th example of
  each class (in file order) for the test set, so it never changes.
  """
  from sklearn.datasets import load_digits

  digits = load_digits()
  images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  test = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    test[members[::round(1 / test_fraction)]] = True
  return (images[~test], labels[~test], images[test], labels[test],
          [str(i) for i in range(10)])
