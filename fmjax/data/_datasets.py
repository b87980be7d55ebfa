"""Datasets by name, from local files or a prepared tensorflow-datasets copy."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pathlib
import shutil
from dataclasses import dataclass

import numpy as np

from fmjax.data import _readers

DATA_DIR_ENV = "FMJAX_DATA_DIR"
DEFAULT_DATA_DIR = pathlib.Path("~/fmjax_data")
FASHION_MNIST_SYSTEM_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
  """What a dataset is and how it is found.

  ``num_classes`` and ``image_shape`` are checked on every load, so files of
  another dataset in the wrong place are named instead of trained on.
  ``tfds_name`` None: not in tensorflow-datasets. ``family`` names the paper's
  settings it gets (training schedule, batch, mask ratio): ``'cifar'``,
  ``'mnist'`` or ``'tiny_imagenet'``.
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  tfds_name: str | None
  local_hint: str
  family: str


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, (32, 32, 3), "cifar10",
                           "cifar-10-batches-bin/, cifar-10-batches-py/ or "
                           "cifar-10-python.tar.gz", "cifar"),
    "cifar100": DatasetInfo("cifar100", 100, (32, 32, 3), "cifar100",
                            "cifar-100-binary/, cifar-100-python/ or cifar-100-python.tar.gz",
                            "cifar"),
    "mnist": DatasetInfo("mnist", 10, (28, 28, 1), "mnist",
                         "mnist/ holding the four *-ubyte.gz IDX files", "mnist"),
    "fashion_mnist": DatasetInfo("fashion_mnist", 10, (28, 28, 1), "fashion_mnist",
                                 "fashion_mnist/ holding the four *-ubyte.gz IDX files", "mnist"),
    "tiny_imagenet": DatasetInfo("tiny_imagenet", 200, (64, 64, 3), None,
                                 "tiny-imagenet-200/ (the standard folder)", "tiny_imagenet"),
    "digits": DatasetInfo("digits", 10, (8, 8, 1), None, "(bundled with scikit-learn)", "mnist"),
}


@dataclass(frozen=True)
class Dataset:
  """A dataset in memory: uint8 images [N, H, W, C], int32 labels [N].

  ``mean`` and ``std`` are per-channel statistics of the training images in
  [0, 1] units, used by :func:`fmjax.data.normalize`.
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  class_names: tuple[str, ...]
  source: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self.train_images.shape[1:])

  @functools.cached_property
  def mean(self) -> np.ndarray:
    return (self.train_images.reshape(-1, self.image_shape[-1]).mean(0) / 255.0).astype(
        np.float32)

  @functools.cached_property
  def std(self) -> np.ndarray:
    return (self.train_images.reshape(-1, self.image_shape[-1]).std(0) / 255.0).astype(
        np.float32)


def data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
  """The data directory: the argument, else $FMJAX_DATA_DIR, else ~/fmjax_data."""
  chosen = override or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
  return pathlib.Path(chosen).expanduser()


def _check_name(name: str) -> DatasetInfo:
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}.")
  return DATASETS[name]


def _local(info: DatasetInfo, root: pathlib.Path):
  """(arrays, source) from local files, or None when none are there."""
  name = info.name
  if name == "digits":
    return _readers.read_digits(), "scikit-learn load_digits"
  if name in ("mnist", "fashion_mnist"):
    names = _readers.FASHION_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    candidates = [root / name, root / name.replace("_", "-")]
    if name == "fashion_mnist":
      candidates.append(FASHION_MNIST_SYSTEM_DIR)
    for d in candidates:
      if d.is_dir() and _readers.find_idx(d, _readers.IDX_FILES["train_images"]):
        return _readers.read_idx_dir(d, names), str(d)
    return None
  if name in ("cifar10", "cifar100"):
    c100 = name == "cifar100"
    binary = root / ("cifar-100-binary" if c100 else "cifar-10-batches-bin")
    if binary.is_dir():
      return _readers.read_cifar_binary(binary, c100), str(binary)
    for cand in ((root / "cifar-100-python", root / "cifar-100-python.tar.gz") if c100 else
                 (root / "cifar-10-batches-py", root / "cifar-10-python.tar.gz")):
      if cand.exists():
        arrays = _readers.read_cifar_python(cand, cifar100=c100)
        if not c100 and not arrays[4]:
          arrays = arrays[:4] + (_readers.CIFAR10_CLASSES,)
        return arrays, str(cand)
    return None
  if name == "tiny_imagenet":
    d = root / "tiny-imagenet-200"
    return (_readers.read_tiny_imagenet(d), str(d)) if d.is_dir() else None
  return None


def _tfds(info: DatasetInfo, root: pathlib.Path, *, require_prepared: bool):
  """(arrays, source) from a prepared TFDS copy, or None when not prepared.

  With ``require_prepared`` (source='auto') TFDS is only read when the builder
  reports a prepared copy, so a failed lookup never writes into the data
  directory; source='tfds' always asks ``tfds.data_source`` (which
  ``tfds.testing.mock_data`` serves in tests).
  """
  if info.tfds_name is None:
    return None
  import tensorflow_datasets as tfds

  tfds_dir = root / "tfds"
  with _quiet_absl():   # a missing copy is an answer here, not a warning
    builder = tfds.builder(info.tfds_name, data_dir=str(tfds_dir))
    if require_prepared and not builder.is_prepared():
      return None
  try:
    sources = tfds.data_source(info.tfds_name, split=["train", "test"], data_dir=str(tfds_dir),
                               download=False)
  except (AssertionError, FileNotFoundError, NotImplementedError) as e:
    if require_prepared:  # prepared, but not in a random-access format
      raise FileNotFoundError(
          f"{tfds_dir} holds {info.tfds_name} in a format tfds.data_source cannot read "
          f"({e}); prepare it again with `make data DATASET={info.name}`.") from e
    return None
  names = list(builder.info.features["label"].names)

  def to_arrays(source):
    n = len(source)
    images = np.stack([np.asarray(source[i]["image"], np.uint8) for i in range(n)])
    labels = np.asarray([int(source[i]["label"]) for i in range(n)], np.int32)
    return images, labels

  train_x, train_y = to_arrays(sources[0])
  test_x, test_y = to_arrays(sources[1])
  if train_x.ndim == 3:
    train_x, test_x = train_x[..., None], test_x[..., None]
  return (train_x, train_y, test_x, test_y, names), f"tfds:{info.tfds_name} in {tfds_dir}"


@contextlib.contextmanager
def _quiet_absl():
  """Silences tensorflow-datasets' absl warnings about a copy that is not there."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _remove_incomplete(dataset_dir: pathlib.Path) -> None:
  """Removes what a failed preparation left in ``dataset_dir``: TFDS's
  ``incomplete.*`` folders, then the folder itself if nothing else is there."""
  if not dataset_dir.is_dir():
    return
  for leftover in dataset_dir.glob("incomplete.*"):
    shutil.rmtree(leftover, ignore_errors=True)
  for folder in sorted(dataset_dir.rglob("*"), reverse=True):   # empty version folders
    if folder.is_dir() and not any(folder.iterdir()):
      folder.rmdir()
  if not any(dataset_dir.iterdir()):
    dataset_dir.rmdir()


def how_to_get(name: str, root: pathlib.Path, sep: str = "\n  ") -> str:
  """The exact commands that make dataset ``name`` available (``sep`` between them)."""
  info = _check_name(name)
  lines = []
  if name == "fashion_mnist":
    lines.append(f"apt-get install dataset-fashion-mnist   (files in {FASHION_MNIST_SYSTEM_DIR})")
  if info.tfds_name:
    lines.append(f"make data DATASET={name} DATA_DIR={root}   (needs a network; "
                 "installs tensorflow-cpu for tensorflow-datasets' download_and_prepare)")
  lines.append(f"or put {info.local_hint} in {root}")
  return sep.join(lines)


def load_dataset(name: str, data_dir_override: str | os.PathLike | None = None,
                 *, source: str = "auto") -> Dataset:
  """Loads a dataset by name into memory.

  Args:
    name: one of ``fmjax.data.DATASETS``.
    data_dir_override: where local files and the TFDS copy live (default:
      $FMJAX_DATA_DIR, else ~/fmjax_data).
    source: ``'auto'`` (local files first, then TFDS), ``'local'`` or ``'tfds'``.

  Raises:
    ValueError: unknown name or source.
    FileNotFoundError: the dataset is nowhere; the message has the commands
      that make it available.
  """
  info = _check_name(name)
  if source not in ("auto", "local", "tfds"):
    raise ValueError(f"source must be 'auto', 'local' or 'tfds', got {source!r}.")
  root = data_dir(data_dir_override)
  found = None
  if source in ("auto", "local"):
    try:
      found = _local(info, root)
    except _readers.DamagedFile as e:
      raise _readers.DamagedFile(e.path, f"{e.problem}. Delete it and get a "
                                         f"good copy: {how_to_get(name, root, sep='; ')}"
                                 ) from None
  if found is None and source in ("auto", "tfds"):
    found = _tfds(info, root, require_prepared=source == "auto")
  if found is None:
    raise FileNotFoundError(f"dataset {name!r} is not available (looked in {root}). "
                            f"To make it available:\n  {how_to_get(name, root)}")
  (train_x, train_y, test_x, test_y, names), where = found
  if train_x.ndim != 4 or train_x.dtype != np.uint8:
    raise ValueError(f"{where}: expected uint8 images [N, H, W, C], got {train_x.dtype} "
                     f"{train_x.shape}.")
  for part, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
    if tuple(images.shape[1:]) != info.image_shape:
      raise ValueError(f"{where}: {name} images are {info.image_shape}, but the {part} images "
                       f"found there are {tuple(images.shape[1:])}; is it another dataset?")
    if len(labels) and not 0 <= int(np.min(labels)) <= int(np.max(labels)) < info.num_classes:
      raise ValueError(f"{where}: {name} has labels 0..{info.num_classes - 1}, but the {part} "
                       f"labels found there span {int(np.min(labels))}..{int(np.max(labels))}; "
                       "is it another dataset?")
  return Dataset(name, train_x, train_y, test_x, test_y, tuple(names), where)


class PrepareError(RuntimeError):
  """Preparing a dataset failed for a reason the user can act on (no network,
  a wrong archive); the message says what to do."""


def archive_dir(data_dir_override: str | os.PathLike | None = None) -> pathlib.Path:
  """Where :func:`prepare_tfds` looks for archives downloaded by hand:
  ``<data dir>/tfds/downloads/manual`` (tensorflow-datasets' own manual folder)."""
  return data_dir(data_dir_override) / "tfds" / "downloads" / "manual"


def _archives(builder) -> dict[str, str]:
  """``{url: file name}`` of the files ``builder`` downloads (its registered checksums)."""
  return {url: info.filename or url.rsplit("/", 1)[-1]
          for url, info in sorted((type(builder).url_infos or {}).items())}


def prepare_tfds(name: str, data_dir_override: str | os.PathLike | None = None, *,
                 archives: str | os.PathLike | None = None) -> pathlib.Path:
  """Prepares a tensorflow-datasets copy of ``name`` that :func:`load_dataset` reads.

  tensorflow-datasets' own ``download_and_prepare`` does the work and writes
  the random-access ``array_record`` format that ``tfds.data_source`` reads
  without TensorFlow. The archives come from the dataset's official URLs, or,
  with no network, from files downloaded elsewhere: put them, under their
  original names (e.g. ``cifar-10-binary.tar.gz``), in ``archives`` (default
  :func:`archive_dir`). Either way tensorflow-datasets checks each file against
  its registered size and SHA-256 before it reads it.

  Needs TensorFlow (``pip install 'fmjax[prepare]'``) for the preparation only.

  Returns:
    The TFDS data directory (``<data dir>/tfds``).

  Raises:
    ValueError: ``name`` is not in tensorflow-datasets.
    PrepareError: the download failed (no network) or an archive does not match
      its checksum; the message names the URLs and where to put the files.
  """
  info = _check_name(name)
  root = data_dir(data_dir_override)
  if info.tfds_name is None:
    raise ValueError(f"{name!r} is not in tensorflow-datasets; put {info.local_hint} in "
                     f"{root}.")
  try:
    import tensorflow  # noqa: F401 -- tensorflow-datasets prepares with it
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise PrepareError(f"preparing {name} needs TensorFlow ({e}); install it with `pip "
                       "install 'fmjax[prepare]'` (`make data` does).") from e
  target = root / "tfds"
  manual = pathlib.Path(archives).expanduser() if archives else archive_dir(root)
  # array_record: the random-access format tfds.data_source reads without TensorFlow.
  with _quiet_absl():
    builder = tfds.builder(info.tfds_name, data_dir=str(target), file_format="array_record")
  files = _archives(builder)
  missing = {url: fname for url, fname in files.items() if not (manual / fname).exists()}

  def failed(reason: str) -> PrepareError:
    listing = "\n".join(f"    {url}  ->  {manual / fname}" for url, fname in files.items())
    return PrepareError(
        f"could not prepare {name}: {reason}\n"
        f"  tensorflow-datasets needs these files (size and SHA-256 checked):\n{listing}\n"
        f"  Without a network here: download them on another machine and put them at the "
        f"paths above (or in a folder given with --archives), then run the same command "
        f"again.\n  Or skip tensorflow-datasets: put {info.local_hint} in {root}.")

  with _quiet_absl():
    prepared = builder.is_prepared()
  if missing and not prepared:
    # tensorflow-datasets retries a failed connection for minutes; one quick probe
    # tells "no network" at once, before anything is written.
    reason = _unreachable(next(iter(missing)))
    if reason:
      raise failed(reason)
  config = tfds.download.DownloadConfig(manual_dir=str(manual))
  try:
    builder.download_and_prepare(download_config=config)
  except Exception as e:  # noqa: BLE001 -- classified below; anything else is re-raised
    _remove_incomplete(target / info.tfds_name)
    reason = _download_failure(e)
    if reason is None:
      raise
    raise failed(reason) from e
  return target


def _unreachable(url: str, timeout: float = 15.0) -> str | None:
  """Why ``url``'s server cannot be reached (one try, no retries), or None.

  Any HTTP answer, even an error status, means the network works."""
  import requests

  try:
    requests.head(url, timeout=timeout, allow_redirects=False)
  except requests.RequestException as e:
    return f"cannot reach {url} ({type(e).__name__}); no network?"
  return None


def _download_failure(error: BaseException) -> str | None:
  """A one-line reason when ``error`` (or its cause) is a failed download or a
  checksum mismatch, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    kind = type(error).__name__
    module = type(error).__module__
    if kind == "NonMatchingChecksumError":
      return ("a downloaded or placed archive does not match its registered checksum "
              f"({str(error).splitlines()[0]})")
    if module.startswith(("requests", "urllib3", "http.client")) or isinstance(
        error, ConnectionError | TimeoutError) or kind == "DownloadError":
      return f"the download failed, no network? ({kind}: {str(error)[:200]})"
    error = error.__cause__ or error.__context__
  return None
