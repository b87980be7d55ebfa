"""Resumable, crash-consistent work directories.

A work directory holds:

* ``config.json`` -- the run's settings; a rerun with different settings is
  refused (so two runs never mix in one directory);
* ``checkpoints/<epoch>/`` -- one orbax checkpoint per committed epoch: the
  state, and in the same step the run's records up to that epoch with a
  SHA-256 of the state;
* ``metrics.jsonl`` -- one JSON object per record, for reports and plots: a
  copy of the newest checkpoint's records (plus what follows the last epoch,
  e.g. the relearn readout), never the source of truth.

One rule covers every phase: an epoch is committed by ONE atomic step,
orbax's own commit of the step directory (it writes to a temporary name and
renames). After a kill at any moment the directory is either before or after
that epoch; a rerun restores the newest checkpoint, takes the records from
it and rewrites ``metrics.jsonl``, so the records of committed epochs, their
timings included, are kept byte for byte and nothing half-written survives.
JSON files are written to a temporary name and renamed. A checkpoint that
cannot be read or fails its checksum is moved to ``checkpoints-unreadable/``
(kept and reported) and the epochs after the previous one are recomputed.

With several processes (:mod:`fmjax.distributed`) every process runs the
same steps and holds the same replicated state; only process 0 writes the
JSON files, and orbax coordinates the processes' checkpoint commits itself
(its primary host writes the replicated arrays). The work directory must
then be on storage every process sees.

One process writes a work directory at a time (:func:`lock_workdir`, taken by
:func:`claim_workdir`): a second writer is refused with the holder's pid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import sys
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from fmjax import _diffs, distributed
from fmjax._locks import LOCK_FILE, lock_workdir, release_workdir  # noqa: F401 -- its API

log = logging.getLogger(__name__)


def _jsonable(config: Mapping) -> dict:
  return json.loads(json.dumps(dict(config), default=list))


def write_json(path: str | pathlib.Path, obj: Any, *, indent: int | None = 2) -> None:
  """Writes ``obj`` as JSON to ``path`` atomically: a temporary file, fsync, rename."""
  write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def write_text(path: str | pathlib.Path, text: str) -> None:
  """Writes ``text`` to ``path`` atomically: a kill leaves the old file or the new one.

  With several processes (:mod:`fmjax.distributed`) only process 0 writes; the
  others compute the same text and skip the write.
  """
  _write_atomically(path, "w", lambda f: f.write(text))


def _write_atomically(path: str | pathlib.Path, mode: str, write: Callable) -> None:
  """``write(file)`` into a temporary file beside ``path``, fsync, rename: a kill leaves
  the old file or the new one. Only process 0 of several (:mod:`fmjax.distributed`)."""
  if not distributed.is_writer():
    return
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  with open(tmp, mode) as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())
  tmp.replace(path)


def read_config(workdir: str | pathlib.Path, *, kind: str, start: str, fix: str) -> Any:
  """The ``config.json`` of the ``kind`` of run in ``workdir`` (raw JSON).

  Raises:
    FileNotFoundError: no config there; the message says how to ``start`` one.
    ValueError: it cannot be read (naming the file and ``fix``).
  """
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{workdir} holds no {kind} (no config.json); {start}")
  return read_json(path, what=f"the {kind}'s config", fix=fix)


def read_json(path: str | pathlib.Path, *, what: str, fix: str) -> Any:
  """Reads a JSON file; ValueError naming the file, what it is and ``fix`` if unreadable."""
  path = pathlib.Path(path)
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} ({what}) cannot be read: {type(e).__name__}: {e}. {fix}") from e


def _relative(path: str, workdir: pathlib.Path) -> str:
  return os.path.relpath(os.path.abspath(path), os.path.abspath(workdir))


def _same_place(old: Mapping, new: Mapping, key: str, workdir: pathlib.Path) -> bool:
  """Whether the recorded path ``old[key]`` names the place ``new[key]`` does (relative to
  ``workdir``): the directory moved together with it (the relative forms agree), alone
  (the recorded absolute form ``<key>_absolute`` names it still), or a record from before
  paths were recorded relative (absolute, or relative to where that run started)."""
  was, now = old.get(key), new[key]
  if not isinstance(was, str):
    return False
  target = os.path.normpath(os.path.join(os.path.abspath(workdir), now))
  return target in (os.path.normpath(os.path.join(os.path.abspath(workdir), was)),
                    os.path.abspath(was), old.get(f"{key}_absolute"))


def claim_workdir(workdir: str | pathlib.Path, config: Mapping, *,
                  ignore: tuple[str, ...] = (),
                  refuse: Callable[[dict], str | None] | None = None,
                  paths: tuple[str, ...] = ()) -> pathlib.Path:
  """Creates ``workdir`` with ``config.json``, or checks that it holds the same run, and
  holds it for this process (:func:`lock_workdir`).

  Keys in ``ignore`` (e.g. a data directory) may differ between runs. ``refuse``
  reads an existing config and returns why it cannot be this run (e.g. an old
  layout), or None. Keys in ``paths`` are file-system paths: recorded relative to
  ``workdir`` (and absolute, as ``<key>_absolute``), so a directory moved or copied with
  what they name, or alone, resumes wherever the path still names the same place.

  Raises:
    ValueError: ``workdir`` is a file, holds a run with different settings, its
      config.json is unreadable, or another process is using it.
  """
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f"--workdir {workdir} is a file, not a directory; choose another path.")
  created = not workdir.exists()
  workdir.mkdir(parents=True, exist_ok=True)
  fresh_lock = not (workdir / LOCK_FILE).exists()
  lock_workdir(workdir)
  try:
    return _check_config(workdir, config, ignore, refuse, paths)
  except BaseException:   # refused: leave the directory as it was found
    release_workdir(workdir)
    if fresh_lock:
      (workdir / LOCK_FILE).unlink(missing_ok=True)
    if created and not any(workdir.iterdir()):
      workdir.rmdir()
    raise


def _check_config(workdir: pathlib.Path, config: Mapping, ignore: tuple[str, ...],
                  refuse: Callable[[dict], str | None] | None, paths: tuple[str, ...]
                  ) -> pathlib.Path:
  path = workdir / "config.json"
  config = _jsonable(config)
  for k in paths:
    if isinstance(config.get(k), str):
      config[f"{k}_absolute"] = os.path.abspath(config[k])
      config[k] = _relative(config[k], workdir)
  moved = tuple(f"{k}_absolute" for k in paths)   # compared through their key's place
  if path.exists():
    old = read_json(path, what="this run's config", fix=(
        f"It was damaged (e.g. a kill while it was first written); if {workdir} holds no run "
        "you want to keep, delete that file and run the same command again."))
    reason = refuse(old) if refuse is not None else None
    if reason:
      raise ValueError(f"{path} cannot be resumed: {reason}")
    keys = [k for k in sorted(set(old) | set(config))
            if k not in ignore + moved and old.get(k) != config.get(k)   # absent = None
            and not (k in paths and _same_place(old, config, k, workdir))]
    if keys:
      changed = _diffs.changed_settings({k: old.get(k) for k in keys if k in old},
                                        {k: config.get(k) for k in keys if k in config})
      raise ValueError(f"{workdir} holds a run with a different config ({changed}). "
                       "Use another --workdir for this one.")
  else:
    write_json(path, config)
  return workdir


def write_arrays(path: str | pathlib.Path, arrays: Mapping[str, np.ndarray]) -> str:
  """Writes named arrays as one ``.npz`` atomically (temporary file, fsync, rename) and
  returns their :func:`tree_checksum`, which :func:`read_arrays` verifies."""
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  _write_atomically(path, "wb", lambda f: np.savez(f, **arrays))
  return tree_checksum(arrays)


def read_arrays(path: str | pathlib.Path, sha256: str, *, fix: str) -> dict[str, np.ndarray]:
  """The arrays :func:`write_arrays` wrote to ``path``; a missing, damaged or different
  file raises ValueError naming it and ``fix``."""
  path = pathlib.Path(path)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} cannot be read ({type(e).__name__}: {e}); {fix}") from None
  if tree_checksum(arrays) != sha256:
    raise ValueError(f"{path} does not match the checksum its run recorded; {fix}")
  return arrays


def tree_checksum(tree: Any) -> str:
  """SHA-256 over every array of ``tree``: its path, dtype, shape and bytes."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


class Checkpoints:
  """Orbax checkpoints of a pytree and the run's records, one per committed epoch,
  in ``workdir/checkpoints``."""

  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 2):
    self.workdir = pathlib.Path(workdir).resolve()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.workdir / "checkpoints", options=options,
                                         item_handlers={
                                             "state": ocp.StandardCheckpointHandler(),
                                             "records": ocp.JsonCheckpointHandler()})

  def commit(self, epoch: int, tree: Any, records: list[dict]) -> None:
    """Commits ``epoch``: the state ``tree`` and ALL records up to it, in one orbax
    step (atomic), then refreshes ``metrics.jsonl`` from those records.

    Raises:
      RuntimeError: orbax declined to save (a checkpoint of this or a later
        epoch is already there), so the epoch would silently not be kept.
    """
    payload = {"records": records, "checksum": tree_checksum(tree)}
    saved = self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), records=ocp.args.JsonSave(payload)))
    self.manager.wait_until_finished()
    if not saved:
      raise RuntimeError(
          f"orbax did not save the checkpoint of epoch {epoch} in {self.directory}: it holds "
          f"epochs {sorted(self.manager.all_steps())}. The directory was changed while this "
          "run was using it; start again in a fresh work directory.")
    write_metrics(self.workdir, records)

  def restore_latest(self, like: Any) -> tuple[int, Any, list[dict]] | None:
    """The newest readable checkpoint as ``(epoch, tree, records)``; None when there is none.

    A checkpoint that cannot be read (corrupt, partial or foreign files) or
    whose arrays fail the checksum saved with them is not deleted and not
    silently skipped: it is moved to ``checkpoints-unreadable/<epoch>-<n>``
    beside ``checkpoints``, the reason is printed, and the checkpoint before
    it is tried. The caller then recomputes the epochs after the one
    restored, and commits them anew; it rewrites ``metrics.jsonl`` from the
    restored records (:func:`write_metrics`) once it knows what follows them.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    for epoch in sorted(self.manager.all_steps(), reverse=True):
      try:
        out = self.manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), records=ocp.args.JsonRestore()))
        payload = out["records"]
        if tree_checksum(out["state"]) != payload["checksum"]:
          raise ValueError("its arrays do not match the SHA-256 saved with them (the files "
                           "were changed or damaged)")
        return epoch, out["state"], payload["records"]
      except Exception as e:  # noqa: BLE001 -- reported below, the files are kept
        moved = self._move_aside(epoch)
        reason = str(e).splitlines()[0][:300] if str(e) else ""
        message = (f"checkpoint of epoch {epoch} cannot be read ({type(e).__name__}: "
                   f"{reason}); moved to {moved} and the epochs after the previous checkpoint "
                   "will be recomputed")
        log.warning(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)
    return None

  @property
  def directory(self) -> pathlib.Path:
    return pathlib.Path(self.manager.directory)

  def _move_aside(self, epoch: int) -> pathlib.Path:
    """Moves the checkpoint of ``epoch`` out of orbax's sight, keeping its files."""
    source = self.directory / str(epoch)
    aside = self.directory.parent / "checkpoints-unreadable"
    aside.mkdir(exist_ok=True)
    n = 0
    while (aside / f"{epoch}-{n}").exists():
      n += 1
    target = aside / f"{epoch}-{n}"
    source.rename(target)
    self.manager.reload()
    return target

  def structure_mismatch(self, like: Any) -> str | None:
    """Why the newest checkpoint cannot hold a tree like ``like``, or None.

    Compares leaf count and shapes with the saved metadata (nothing is read
    but metadata), so a checkpoint of another model is named as such instead
    of failing deep inside the restore.
    """
    steps = sorted(self.manager.all_steps())
    if not steps:
      return None
    try:
      saved = self.manager.item_metadata(steps[-1])["state"]
      saved = getattr(saved, "tree", saved)
    except Exception:  # noqa: BLE001 -- unreadable metadata: restore_latest reports it
      return None
    got, want = _shapes(saved), _shapes(like)
    if not got:   # damaged metadata: restore_latest reports and moves the checkpoint aside
      return None
    if set(got) != set(want):
      extra = sorted(set(got) - set(want))[:3]
      missing = sorted(set(want) - set(got))[:3]
      return (f"it holds {len(got)} arrays, the config's model needs {len(want)} (only there: "
              f"{extra}; missing there: {missing})")
    for path, shape in want.items():
      if got[path] != shape:
        return (f"array '{path}' has shape {got[path]} there, the config's model needs "
                f"{shape}")
    return None

  def close(self) -> None:
    self.manager.close()


def _shapes(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
  """``{path: shape}`` of every array in a tree of dicts, lists and (named) tuples."""
  if hasattr(tree, "shape"):
    return {prefix: tuple(tree.shape)}
  if isinstance(tree, Mapping):
    items = tree.items()
  elif hasattr(tree, "_fields"):
    items = zip(tree._fields, tree, strict=True)
  elif isinstance(tree, list | tuple):
    items = enumerate(tree)
  else:
    return {}
  out = {}
  for k, v in items:
    out.update(_shapes(v, f"{prefix}/{k}" if prefix else str(k)))
  return out


# The fields of a record that say how long it took and how the time was shared (a stacked
# epoch's K units): they differ between an uninterrupted run and a killed-and-resumed one
# (whose resumed epochs may run alone), every other field is equal.
TIMING_FIELDS = ("seconds", "examples_per_s", "stacked_units")


def untimed(records: list[dict]) -> list[dict]:
  """``records`` without their :data:`TIMING_FIELDS`: what two runs of one config share."""
  return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
  """The records of ``metrics.jsonl`` ([] when there is none).

  Raises:
    ValueError: a line is not JSON; the message names the file and the line.
  """
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  out = []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    if line.strip():
      try:
        out.append(json.loads(line))
      except ValueError as e:
        raise ValueError(f"{path}, line {n}, is not JSON ({e}). The file is a copy of the "
                         "records in the newest checkpoint: run the same command again to "
                         "rewrite it.") from e
  return out


def write_metrics(workdir: str | pathlib.Path, records: list[dict]) -> None:
  """Writes ``metrics.jsonl`` atomically (one JSON object per line)."""
  write_text(pathlib.Path(workdir) / "metrics.jsonl",
             "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
