"""Several processes on JAX's distributed runtime: 2 real processes on this machine.

The test starts two Python processes that talk over the loopback interface
(gloo CPU collectives), each with 2 forced host devices, so the mesh spans 4
devices in 2 processes. Each process also computes the single-device result
locally; process 0 reports both. The test stops its processes itself (timeout).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from fmjax import distributed, xla_flags

WORKER = textwrap.dedent('''
    from fmjax import xla_flags; xla_flags.configure()   # a script is an entry point
    import json
    from fmjax import distributed
    assert distributed.initialize(timeout_s=120)
    import jax, jax.numpy as jnp, numpy as np
    import fmjax
    from fmjax import data, finetuning, runner, sharding, steps
    from fmjax.models import get_model
    from tests.conftest import rel_error
    ds = data.load_dataset("digits")
    images, labels = ds.train_images[:200], ds.train_labels[:200]
    model = get_model("small_cnn", 10)
    proc = finetuning.finetune_procedure(0.01, batch_size=1, momentum=0.9, weight_decay=1e-4)
    init = steps.init_train_state(model, steps.sgd(momentum=0.9, weight_decay=1e-4),
                                  jax.random.key(0), (1, 8, 8, 1))

    def ten_steps(mesh):   # ten augmented steps of batch 37: padded to 40 on 4 devices
      step = runner.make_step(model, proc.stages[0], proc, augment=True, mesh=mesh)
      state = sharding.replicate(init, mesh)
      x, y = sharding.replicate((jnp.asarray(images), jnp.asarray(labels)), mesh)
      for t in range(10):
        idx = np.random.default_rng(t).permutation(200)[:37]
        state, m = step(state, None, x, y, idx, None, jax.random.key(t), np.float32(0.01),
                        np.float32(0), None, ds.mean, ds.std)
      return sharding.to_host(state)

    mesh = sharding.data_mesh()
    batch = {"image": data.normalize(images[:45], ds.mean, ds.std), "label": labels[:45]}
    out = {"processes": jax.process_count(), "devices": mesh.size,
           "local": len(jax.local_devices())}
    for kind in ("empirical", "true"):
      for path in ("per_layer", "vmap"):
        ref = fmjax.make_fisher_diag(model, init.model_state, kind=kind, path=path,
                                     chunk_size=8, devices=1).sum(init.params, batch)
        got = fmjax.make_fisher_diag(model, init.model_state, kind=kind, path=path,
                                     chunk_size=8, devices=mesh).sum(init.params, batch)
        out[f"fisher/{kind}/{path}"] = [rel_error(sharding.to_host(got.total),
                                                  sharding.to_host(ref.total)),
                                        float(got.count)]
    ref, got = ten_steps(None), ten_steps(mesh)
    out["steps"] = [rel_error(got.params, ref.params), rel_error(got.model_state,
                                                                 ref.model_state)]
    if distributed.is_writer():
      print("RESULT " + json.dumps(out), flush=True)
    jax.distributed.shutdown()
''')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _in_two_processes(argv: list[str]) -> list[tuple[str, str]]:
  """Runs ``python argv`` as processes 0 and 1 of one job (2 CPU devices each), joined
  over loopback; returns their (stdout, stderr). Kills both on timeout or failure."""
  port = _free_port()
  procs = []
  for pid in range(2):
    env = {**os.environ, "XLA_FLAGS": xla_flags.host_devices(2),
           "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
           "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(pid), "PYTHONPATH": ROOT}
    procs.append(subprocess.Popen([sys.executable, *argv], env=env, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=300))
  finally:
    for p in procs:   # never leave a process behind, whatever happened
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, (_, err) in zip(procs, outputs, strict=True):
    assert p.returncode == 0, err[-3000:]
  return outputs


@pytest.fixture(scope="module")
def two_processes():
  outputs = _in_two_processes(["-c", WORKER])
  lines = [ln for ln in outputs[0][0].splitlines() if ln.startswith("RESULT ")]
  assert len(lines) == 1 and not any(ln.startswith("RESULT ") for ln in
                                     outputs[1][0].splitlines()), "only process 0 reports"
  return json.loads(lines[0][len("RESULT "):])


@pytest.mark.scale   # make test-scale (CI): real processes, about 40 s
def test_the_mesh_spans_both_processes(two_processes):
  assert two_processes["processes"] == 2
  assert two_processes["devices"] == 4 and two_processes["local"] == 2


@pytest.mark.scale
@pytest.mark.parametrize("kind", ["empirical", "true"])
@pytest.mark.parametrize("path", ["per_layer", "vmap"])
def test_a_fisher_pass_over_two_processes_equals_one_device(two_processes, kind, path):
  err, count = two_processes[f"fisher/{kind}/{path}"]
  assert err < 1e-6
  assert count == 45   # 45 examples on 4 devices: the 3 padding examples never count


@pytest.mark.scale
def test_ten_training_steps_over_two_processes_equal_one_device(two_processes):
  params_err, stats_err = two_processes["steps"]
  assert params_err < 1e-5 and stats_err < 1e-5


def _environ(monkeypatch, **values):
  for name in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_ID,
               distributed.ENV_AUTO):
    monkeypatch.delenv(name, raising=False)
  for name, value in values.items():
    monkeypatch.setenv(getattr(distributed, name), value)


def test_a_single_process_needs_no_initialisation(monkeypatch):
  _environ(monkeypatch)
  assert distributed.initialize() is False
  _environ(monkeypatch, ENV_COUNT="1", ENV_ID="0", ENV_ADDRESS="localhost:1234")
  assert distributed.initialize() is False   # one process in all: nothing to join


BAD_ENVIRONMENTS = [
    ({"ENV_COUNT": "2"}, "JAX_NUM_PROCESSES set but JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID "
                         "not"),
    ({"ENV_COUNT": "1"}, "JAX_NUM_PROCESSES set but"),
    ({"ENV_ADDRESS": "h:1"}, "JAX_COORDINATOR_ADDRESS set but JAX_NUM_PROCESSES"),
    ({"ENV_COUNT": "abc", "ENV_ID": "0", "ENV_ADDRESS": "h:1"},
     "JAX_NUM_PROCESSES='abc' must be an integer >= 1"),
    ({"ENV_COUNT": "0", "ENV_ID": "0", "ENV_ADDRESS": "h:1"},
     "JAX_NUM_PROCESSES='0' must be an integer >= 1"),
    ({"ENV_COUNT": "-1", "ENV_ID": "0", "ENV_ADDRESS": "h:1"},
     "JAX_NUM_PROCESSES='-1' must be an integer >= 1"),
    ({"ENV_COUNT": "2", "ENV_ID": "2", "ENV_ADDRESS": "h:1"},
     "JAX_PROCESS_ID='2' must be an integer 0..1"),
    ({"ENV_COUNT": "2", "ENV_ID": "x", "ENV_ADDRESS": "h:1"}, "JAX_PROCESS_ID='x'"),
    ({"ENV_COUNT": "2", "ENV_ID": "0", "ENV_ADDRESS": "127.0.0.1:abc"},
     "JAX_COORDINATOR_ADDRESS='127.0.0.1:abc' must be host:port"),
    ({"ENV_COUNT": "2", "ENV_ID": "0", "ENV_ADDRESS": "nonsense"},
     "JAX_COORDINATOR_ADDRESS='nonsense' must be host:port"),
    ({"ENV_COUNT": "2", "ENV_ID": "0", "ENV_ADDRESS": "h:70000"}, "port in 1..65535"),
    ({"ENV_AUTO": "yes"}, "FMJAX_DISTRIBUTED='yes': the only value is 'auto'"),
]


@pytest.mark.parametrize("values, message", BAD_ENVIRONMENTS)
def test_a_half_set_or_malformed_environment_is_refused_naming_the_variable(
    monkeypatch, values, message):
  _environ(monkeypatch, **values)
  with pytest.raises(ValueError, match=re.escape(message)):
    distributed.initialize()


@pytest.mark.parametrize("values, message", [BAD_ENVIRONMENTS[0], BAD_ENVIRONMENTS[3],
                                             BAD_ENVIRONMENTS[8]])
def test_the_cli_refuses_a_bad_environment_before_writing_anything(tmp_path, values, message):
  """A real process (the segfaulting port once): one line, exit 2, no work directory."""
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FMJAX_DIST"))}
  env.update({getattr(distributed, k): v for k, v in values.items()})
  workdir = tmp_path / "run"
  out = subprocess.run([sys.executable, "-m", "fmjax", "train", "--dataset", "digits",
                        "--model", "small_cnn", "--epochs", "1", "--workdir", str(workdir)],
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr
  assert message in out.stderr and "Traceback" not in out.stderr
  assert len(out.stderr.strip().splitlines()) == 1
  assert not workdir.exists()


def test_an_unreachable_coordinator_says_what_it_waited_for(monkeypatch, capsys):
  """Process 1 of 2 and no process 0 (a closed port): it says whom it waits for, then gives
  up by name instead of JAX's abort."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  _environ(monkeypatch, ENV_COUNT="2", ENV_ID="1", ENV_ADDRESS=f"127.0.0.1:{port}")
  with pytest.raises(ValueError, match=rf"process 1 of 2 could not reach the coordinator at "
                                       rf"127\.0\.0\.1:{port} within 2 s"):
    distributed.initialize(timeout_s=2)
  assert f"joining the coordinator at 127.0.0.1:{port}" in capsys.readouterr().err


def _summary(workdir) -> dict:
  summary = json.loads((workdir / "summary.json").read_text())
  summary.pop("seconds")
  return summary


@pytest.mark.scale
def test_two_processes_train_unlearn_and_resume_like_one(tmp_path):
  """`python -m fmjax train` and `unlearn` as 2 processes (4 devices) write one work
  directory (process 0 writes the files, orbax coordinates the checkpoints) whose
  records equal a single-process run's; after a simulated kill (the last checkpoint and
  the summary gone) a restart of both processes resumes and reports the same."""
  train = ["-m", "fmjax", "train", "--dataset", "digits", "--model", "small_cnn",
           "--epochs", "2", "--quiet", "--workdir"]
  unlearn = ["--method", "fisher_mask", "--epochs", "2", "--batch-size", "37",
             "--relearn-epochs", "1", "--eval-limit", "300", "--quiet", "--workdir"]
  _in_two_processes([*train, str(tmp_path / "t2")])
  _in_two_processes(["-m", "fmjax", "unlearn", "--checkpoint", str(tmp_path / "t2"),
                     *unlearn, str(tmp_path / "u2")])
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  for argv in ([*train, str(tmp_path / "t1")],
               ["-m", "fmjax", "unlearn", "--checkpoint", str(tmp_path / "t1"), *unlearn,
                str(tmp_path / "u1")]):
    subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, check=True, timeout=300,
                   capture_output=True)
  one, two = _summary(tmp_path / "u1"), _summary(tmp_path / "u2")
  assert two["final"] == pytest.approx(one["final"], rel=1e-5)
  assert two["mask_only"] == pytest.approx(one["mask_only"], rel=1e-5)
  assert two["relearn_steps"] == one["relearn_steps"]
  assert not list(tmp_path.glob("**/.*.tmp"))   # no half-written file from either process
  # A kill after epoch 1 was committed: restart both processes.
  before = (tmp_path / "u2" / "metrics.jsonl").read_text().splitlines()
  shutil.rmtree(tmp_path / "u2" / "checkpoints" / "2")
  (tmp_path / "u2" / "summary.json").unlink()
  _in_two_processes(["-m", "fmjax", "unlearn", "--checkpoint", str(tmp_path / "t2"),
                     *unlearn, str(tmp_path / "u2")])
  after = (tmp_path / "u2" / "metrics.jsonl").read_text().splitlines()
  # Resumed, not restarted: the committed records (original, edit, epoch 1) are kept
  # byte for byte, wall times included; epoch 2 and relearn were computed again.
  assert after[:3] == before[:3] and len(after) == len(before) == 5
  assert after[3] != before[3]
  assert _summary(tmp_path / "u2") == two
