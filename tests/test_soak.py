"""kill -9 at every phase boundary, rerun, and nothing is lost or different.

Each case runs the real command in a subprocess with ``FMJAX_CRASH_AT`` set
(the process SIGKILLs itself at that named point, see fmjax/_faults.py),
checks it died, reruns the same command without it, and compares everything
with an uninterrupted run: parameters bit for bit, every record and summary
field but wall times, and the records committed before the kill byte for
byte (timings included). Then files are damaged (truncated or overwritten
checkpoint data, a missing metadata file, empty or garbage JSON) and each
gives a recovery or an error that names the file and the fix.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from fmjax import checkpoints, training
from fmjax._faults import ENV
from fmjax.checkpoints import untimed

TRAIN = ["train", "--dataset", "digits", "--model", "small_cnn", "--epochs", "3",
         "--batch-size", "64", "--lr", "0.05", "--decay-epochs", "2", "--augment", "--quiet"]
UNLEARN = ["unlearn", "--method", "fisher_mask", "--epochs", "2", "--relearn-epochs", "1",
           "--eval-limit", "200", "--score-limit", "200", "--confidences", "--quiet"]


def fmjax(args, crash=None, timeout=300):
  env = {k: v for k, v in os.environ.items() if k != ENV}
  if crash:
    env[ENV] = crash
  return subprocess.run([sys.executable, "-m", "fmjax", *map(str, args)], capture_output=True,
                        text=True, env=env, timeout=timeout)


def params_of(workdir, ds):
  _, _, state, _ = training.load_trained(str(workdir), dataset=ds)
  return state


def same_leaves(a, b):
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Uninterrupted runs: a training run and an unlearning run from it."""
  root = tmp_path_factory.mktemp("reference")
  out = fmjax(TRAIN + ["--workdir", root / "train"])
  assert out.returncode == 0, out.stderr
  out = fmjax(UNLEARN + ["--checkpoint", root / "train", "--workdir", root / "unlearn"])
  assert out.returncode == 0, out.stderr
  return root


pytestmark = pytest.mark.long   # `make test-long` (and CI) runs this module
SLOW = pytest.mark.slow   # the other boundaries: `make test-slow` runs them too


@pytest.mark.parametrize("point", [pytest.param("train.step.1.0", marks=SLOW),
                                   "train.before_commit.2",
                                   pytest.param("train.epoch.2", marks=SLOW), "train.epoch.3"])
def test_train_killed_at_each_boundary(tmp_path, reference, digits, point):
  workdir = tmp_path / "train"
  killed = fmjax(TRAIN + ["--workdir", workdir], crash=point)
  assert killed.returncode == -9, killed.stderr
  before = checkpoints.read_metrics(workdir) if (workdir / "metrics.jsonl").exists() else []
  rerun = fmjax(TRAIN + ["--workdir", workdir])
  assert rerun.returncode == 0, rerun.stderr
  after = checkpoints.read_metrics(workdir)
  assert after[:len(before)] == before          # committed records kept, timings included
  assert untimed(after) == untimed(checkpoints.read_metrics(reference / "train"))
  assert same_leaves(params_of(workdir, digits), params_of(reference / "train", digits))


@pytest.mark.parametrize("point", ["unlearn.before_commit.0",
                                   pytest.param("unlearn.epoch.0", marks=SLOW),
                                   pytest.param("unlearn.before_commit.2", marks=SLOW),
                                   "unlearn.epoch.2", "unlearn.relearn",
                                   "unlearn.confidences",
                                   pytest.param("unlearn.summary", marks=SLOW)])
def test_unlearn_killed_at_each_boundary(tmp_path, reference, point):
  workdir = tmp_path / "unlearn"
  args = UNLEARN + ["--checkpoint", reference / "train", "--workdir", workdir]
  killed = fmjax(args, crash=point)
  assert killed.returncode == -9, killed.stderr
  before = checkpoints.read_metrics(workdir) if (workdir / "metrics.jsonl").exists() else []
  rerun = fmjax(args)
  assert rerun.returncode == 0, rerun.stderr
  after = checkpoints.read_metrics(workdir)
  committed = [r for r in before if r["phase"] not in ("relearn", "confidences")]
  assert after[:len(committed)] == committed
  want = reference / "unlearn"
  assert untimed(after) == untimed(checkpoints.read_metrics(want))
  summary = json.loads((workdir / "summary.json").read_text())
  expected = json.loads((want / "summary.json").read_text())
  assert {k: v for k, v in summary.items() if k != "seconds"} == {
      k: v for k, v in expected.items() if k != "seconds"}
  # Parameters after the last epoch, from the checkpoints, bit for bit.
  a = checkpoints.Checkpoints(workdir).manager.latest_step()
  b = checkpoints.Checkpoints(want).manager.latest_step()
  assert a == b == 2
  ckpt_a = (workdir / "checkpoints" / "2" / "records" / "metadata")
  ckpt_b = (want / "checkpoints" / "2" / "records" / "metadata")
  checksum = json.loads(ckpt_a.read_text())["checksum"]
  assert checksum == json.loads(ckpt_b.read_text())["checksum"]
  np.testing.assert_equal(dict(np.load(workdir / "confidences.npz")),
                          dict(np.load(want / "confidences.npz")))


@pytest.mark.parametrize("point", ["unlearn.summary", "unlearn.checkpoints_dropped"])
def test_an_ensemble_member_killed_around_dropping_its_checkpoints(tmp_path, reference, point):
  """--no-keep-checkpoints, killed after the summary (checkpoints still there) or after
  their deletion: the rerun recomputes nothing, leaves no checkpoint, and the run's
  records and confidences are the kept reference run's."""
  workdir = tmp_path / "unlearn"
  args = UNLEARN + ["--no-keep-checkpoints", "--checkpoint", reference / "train",
                    "--workdir", workdir]
  killed = fmjax(args, crash=point)
  assert killed.returncode == -9, killed.stderr
  assert (workdir / "checkpoints").exists() == (point == "unlearn.summary")
  before = checkpoints.read_metrics(workdir)
  rerun = fmjax(args)
  assert rerun.returncode == 0, rerun.stderr
  assert checkpoints.read_metrics(workdir) == before   # finished: timings and all kept
  assert not (workdir / "checkpoints").exists()
  want = reference / "unlearn"
  assert untimed(before) == untimed(checkpoints.read_metrics(want))
  np.testing.assert_equal(dict(np.load(workdir / "confidences.npz")),
                          dict(np.load(want / "confidences.npz")))


def test_an_experiment_killed_in_its_second_unit(tmp_path):
  """experiments.run: a kill in the second unit; the rerun's results equal an
  uninterrupted run's (every readout of results.csv but wall times)."""
  def run(workdir, crash=None):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if crash:
      env[ENV] = crash
    return subprocess.run([sys.executable, "-m", "experiments.run", "ratio_sweep", "--small",
                           "--workdir", str(workdir), "--quiet"], capture_output=True, text=True,
                          env=env, timeout=600, cwd=pathlib.Path(__file__).resolve().parents[1])

  assert run(tmp_path / "full").returncode == 0
  killed = run(tmp_path / "run", crash="unlearn.epoch.0#2")
  assert killed.returncode == -9, killed.stderr
  rerun = run(tmp_path / "run")
  assert rerun.returncode == 0, rerun.stderr

  def readouts(root):
    import csv
    rows = list(csv.DictReader((root / "results.csv").open()))
    return [{k: v for k, v in row.items() if not k.startswith(("seconds", "examples_per_s"))}
            for row in rows]
  assert readouts(tmp_path / "run") == readouts(tmp_path / "full")


# ---------------------------------------------------------------------------
# Damaged files.

def _copy(src, dst):
  shutil.copytree(src, dst)
  return dst


def _data_files(step_dir: pathlib.Path):
  return sorted(p for p in (step_dir / "state").rglob("*") if p.is_file()
                and p.stat().st_size > 200 and "ocdbt" not in p.name.lower())


@pytest.mark.parametrize("damage", ["overwrite 8 bytes", pytest.param("truncate", marks=SLOW),
                                    "missing _METADATA",
                                    pytest.param("garbage records", marks=SLOW)])
def test_damaged_last_checkpoint_is_moved_aside_and_recomputed(tmp_path, reference, digits,
                                                                damage):
  workdir = _copy(reference / "train", tmp_path / "train")
  step = workdir / "checkpoints" / "3"
  if damage == "overwrite 8 bytes":
    target = max(_data_files(step), key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 8] = b"\xff" * 8
    target.write_bytes(bytes(raw))
  elif damage == "truncate":
    target = max(_data_files(step), key=lambda p: p.stat().st_size)
    target.write_bytes(target.read_bytes()[:100])
  elif damage == "missing _METADATA":
    for f in step.rglob("_METADATA"):
      f.unlink()
  else:
    (step / "records" / "metadata").write_text("{garbage")
  out = fmjax(TRAIN + ["--workdir", workdir])
  assert out.returncode == 0, out.stderr
  assert "checkpoint of epoch 3 cannot be read" in out.stderr
  assert "Traceback" not in out.stderr and "Event loop is closed" not in out.stderr   # one line
  assert "checkpoints-unreadable/3-0" in out.stderr
  assert (workdir / "checkpoints-unreadable" / "3-0").is_dir()      # kept, not deleted
  assert untimed(checkpoints.read_metrics(workdir)) == untimed(
      checkpoints.read_metrics(reference / "train"))
  assert same_leaves(params_of(workdir, digits), params_of(reference / "train", digits))


@pytest.mark.parametrize("name, content", [pytest.param("config.json", "", marks=SLOW),
                                           ("config.json", "{garb"),
                                           pytest.param("metrics.jsonl", "{garb\n", marks=SLOW),
                                           ("summary.json", ""),
                                           pytest.param("summary.json", "[1, 2", marks=SLOW)])
def test_damaged_json_files(tmp_path, reference, name, content):
  workdir = _copy(reference / "unlearn", tmp_path / "unlearn")
  (workdir / name).write_text(content)
  out = fmjax(UNLEARN + ["--checkpoint", reference / "train", "--workdir", workdir])
  if name == "config.json":   # the run's identity: refused, named, with the fix
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{workdir / 'config.json'} (this run's config) cannot be read" in out.stderr
    assert "delete that file and run the same command again" in out.stderr
  else:                       # copies of the checkpoint's records: rewritten
    assert out.returncode == 0, out.stderr
    assert untimed(checkpoints.read_metrics(workdir)) == untimed(
        checkpoints.read_metrics(reference / "unlearn"))
    got, want = (json.loads((d / "summary.json").read_text())
                 for d in (workdir, reference / "unlearn"))
    assert {k: v for k, v in got.items() if k != "seconds"} == {
        k: v for k, v in want.items() if k != "seconds"}


@pytest.mark.slow
@pytest.mark.parametrize("delay", [2.5, 5.0, 7.5, 10.0])
def test_unlearn_killed_at_a_random_time(tmp_path, reference, delay):
  """A SIGKILL from outside after ``delay`` seconds, wherever the run is."""
  import signal
  import time
  workdir = tmp_path / "unlearn"
  args = UNLEARN + ["--checkpoint", reference / "train", "--workdir", workdir]
  env = {k: v for k, v in os.environ.items() if k != ENV}
  proc = subprocess.Popen([sys.executable, "-m", "fmjax", *map(str, args)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  time.sleep(delay)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rerun = fmjax(args)
  assert rerun.returncode == 0, rerun.stderr
  assert untimed(checkpoints.read_metrics(workdir)) == untimed(
      checkpoints.read_metrics(reference / "unlearn"))


@pytest.mark.parametrize("kind, pause", [("train", "train.epoch.1"),
                                         ("unlearn", "unlearn.epoch.0")])
def test_a_second_writer_is_refused_and_a_killed_holders_lock_is_taken_over(
    tmp_path, reference, digits, kind, pause):
  """Run A stops alive mid-run (``FMJAX_PAUSE_AT``); B on the same directory is refused at
  once with A's pid, writing nothing; A is killed (-9); C takes the lock over and reports
  what an uninterrupted run reports."""
  from fmjax._faults import PAUSE_ENV
  workdir = tmp_path / kind
  args = (TRAIN if kind == "train" else UNLEARN + ["--checkpoint", reference / "train"]) + [
      "--workdir", workdir]
  env = {k: v for k, v in os.environ.items() if k != ENV}
  a = subprocess.Popen([sys.executable, "-m", "fmjax", *map(str, args)], text=True,
                       stderr=subprocess.PIPE, env={**env, PAUSE_ENV: pause})
  try:
    for line in a.stderr:   # until A has committed its first epoch and stopped there
      if line.startswith(f"paused at {pause}"):
        break
    else:
      pytest.fail(f"run A ended (rc {a.wait()}) before it paused")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")}
    b = fmjax(args)
    assert b.returncode == 2 and "Traceback" not in b.stderr, b.stderr
    assert b.stderr.strip().splitlines()[-1] == (   # after train's heading, if any
        f"error: {workdir.resolve()} is in use by another run (pid {a.pid}); wait for it to "
        "finish, or stop it, or give this run another --workdir.")
    assert b.stderr.count("error") == 1
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")} == before
  finally:
    a.kill()
    a.wait()
  c = fmjax(args)   # the lock of a killed process is free: C resumes after A's epoch
  assert c.returncode == 0, c.stderr
  holder = (workdir / checkpoints.LOCK_FILE).read_text().strip()
  assert holder.isdigit() and holder != str(a.pid)   # C took it and wrote its own pid
  want = reference / kind
  assert untimed(checkpoints.read_metrics(workdir)) == untimed(checkpoints.read_metrics(want))
