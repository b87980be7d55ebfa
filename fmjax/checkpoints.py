"""Resumable work directories: a config file, orbax checkpoints, a metrics log.

A work directory holds:

* ``config.json`` -- the run's settings; a rerun with different settings is
  refused (so two runs never mix in one directory);
* ``checkpoints/<epoch>/`` -- orbax checkpoints after each completed epoch;
* ``metrics.jsonl`` -- one JSON object per epoch, read by reports and plots.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


def _jsonable(config: Mapping) -> dict:
  return json.loads(json.dumps(dict(config), default=list))


def claim_workdir(workdir: str | pathlib.Path, config: Mapping, *,
                  ignore: tuple[str, ...] = ()) -> pathlib.Path:
  """Creates ``workdir`` with ``config.json``, or checks that it holds the same run.

  Keys in ``ignore`` (e.g. a data directory) may differ between runs.

  Raises:
    ValueError: the directory holds a run with different settings.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "config.json"
  config = _jsonable(config)
  if path.exists():
    old = json.loads(path.read_text())
    diff = {k: (old.get(k), config.get(k)) for k in sorted(set(old) | set(config))
            if k not in ignore and old.get(k) != config.get(k)}
    if diff:
      detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
      raise ValueError(f"{workdir} holds a run with a different config ({detail}). Use another "
                       f"--workdir, or delete {workdir} to start fresh.")
  else:
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  return workdir


class Checkpoints:
  """Orbax checkpoints of a pytree, one per completed epoch, in ``workdir/checkpoints``."""

  def __init__(self, workdir: str | pathlib.Path, *, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(pathlib.Path(workdir).resolve() / "checkpoints",
                                         options=options,
                                         item_handlers=ocp.StandardCheckpointHandler())

  def save(self, epoch: int, tree: Any) -> None:
    """Saves ``tree`` as the checkpoint of ``epoch``.

    Raises:
      RuntimeError: orbax declined to save (a checkpoint of this or a later
        epoch is already there), so the epoch would silently not be kept.
    """
    saved = self.manager.save(epoch, args=ocp.args.StandardSave(tree))
    self.manager.wait_until_finished()
    if not saved:
      raise RuntimeError(
          f"orbax did not save the checkpoint of epoch {epoch} in {self.directory}: it holds "
          f"epochs {sorted(self.manager.all_steps())}. The directory was changed while this "
          "run was using it; start again in a fresh work directory.")

  def restore_latest(self, like: Any) -> tuple[int, Any] | None:
    """The newest readable checkpoint as ``(epoch, tree)``; None when there is none.

    A checkpoint that cannot be read (corrupt or partial files) is not
    deleted and not silently skipped: it is moved to
    ``checkpoints-unreadable/<epoch>-<n>`` beside ``checkpoints``, the reason
    is printed, and the checkpoint before it is tried. The caller then
    recomputes the epochs after the one restored, and saves them anew.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    for epoch in sorted(self.manager.all_steps(), reverse=True):
      try:
        tree = self.manager.restore(epoch, args=ocp.args.StandardRestore(abstract))
        return epoch, tree
      except Exception as e:  # noqa: BLE001 -- reported below, the files are kept
        moved = self._move_aside(epoch)
        message = (f"checkpoint of epoch {epoch} cannot be read ({type(e).__name__}: "
                   f"{str(e).splitlines()[0][:300] if str(e) else ''}); moved to {moved} and "
                   "the epochs after the previous checkpoint will be recomputed")
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
      saved = self.manager.item_metadata(steps[-1])
      saved = getattr(saved, "tree", saved)
    except Exception:  # noqa: BLE001 -- unreadable metadata: restore_latest reports it
      return None
    got, want = _shapes(saved), _shapes(like)
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


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(workdir: str | pathlib.Path, records: list[dict]) -> None:
  path = pathlib.Path(workdir) / "metrics.jsonl"
  tmp = path.with_suffix(".jsonl.tmp")
  tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
  tmp.replace(path)


def append_metrics(workdir: str | pathlib.Path, record: dict) -> None:
  with open(pathlib.Path(workdir) / "metrics.jsonl", "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
