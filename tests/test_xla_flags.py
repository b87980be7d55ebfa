"""fmjax's one XLA flag: set only for the CPU backend, only where jaxlib accepts it."""

from __future__ import annotations

import json

import pytest

from fmjax import xla_flags

BOGUS = "--xla_cpu_fmjax_bogus_flag_for_tests=1"


@pytest.fixture
def clean_env(monkeypatch):
  for var in ("XLA_FLAGS", "JAX_PLATFORMS", xla_flags.SWITCH):
    monkeypatch.delenv(var, raising=False)
  return monkeypatch


def test_a_flag_jaxlib_rejects_is_not_passed_on(clean_env, tmp_path):
  cache = tmp_path / "flags.json"
  clean_env.setenv("JAX_PLATFORMS", "cpu")
  assert xla_flags.configure(BOGUS, cache=cache) is False
  import os
  assert "bogus" not in os.environ.get("XLA_FLAGS", "")
  # The probe's answer is cached per jaxlib version: the next start costs nothing.
  answers = json.loads(cache.read_text())
  assert list(answers.values()) == [False] and BOGUS in next(iter(answers))


def test_an_unknown_version_is_probed_and_an_accepted_flag_set(clean_env, tmp_path):
  import os
  clean_env.setenv("JAX_PLATFORMS", "cpu")
  clean_env.setenv("XLA_FLAGS", "--xla_dump_to=/dev/null")
  assert xla_flags.configure(xla_flags.CPU_FLAG, cache=tmp_path / "c.json", known_good=())
  assert os.environ["XLA_FLAGS"] == f"--xla_dump_to=/dev/null {xla_flags.CPU_FLAG}"


@pytest.mark.parametrize("env", [{"JAX_PLATFORMS": "cuda"}, {"JAX_PLATFORMS": "tpu,cpu"},
                                 {xla_flags.SWITCH: "0"},
                                 {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=all"}])
def test_not_set_off_cpu_when_switched_off_or_when_the_user_chose(clean_env, tmp_path, env):
  import os
  for k, v in env.items():
    clean_env.setenv(k, v)
  before = os.environ.get("XLA_FLAGS")
  assert xla_flags.configure(cache=tmp_path / "c.json") is False
  assert os.environ.get("XLA_FLAGS") == before


def test_set_on_this_cpu_machine(clean_env, tmp_path):
  import os
  assert xla_flags.configure(cache=tmp_path / "c.json") is True
  assert os.environ["XLA_FLAGS"] == xla_flags.CPU_FLAG


def test_importing_fmjax_changes_nothing_in_the_environment(tmp_path):
  """A library import has no side effect: every fmjax module and the experiments import
  with ``os.environ`` untouched and nothing written under ``$HOME`` (the entry points
  set the flag)."""
  import os
  import subprocess
  import sys
  code = ("import os, pkgutil, importlib; before = dict(os.environ); import fmjax, experiments\n"
          "for pkg in (fmjax, experiments):\n"
          "  for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
          "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
          "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()\n"
          "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
          "print('ok')")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.SWITCH)}
  env["HOME"] = str(tmp_path)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
  assert list(tmp_path.iterdir()) == []   # no cache, no probe answer written


def test_host_devices_writes_the_count_and_a_longer_collective_wait(tmp_path):
  wait = f"{xla_flags.COLLECTIVE_WAIT_FLAG}={xla_flags.COLLECTIVE_WAIT_S}"
  assert xla_flags.host_devices(1) == "--xla_force_host_platform_device_count=1"
  assert xla_flags.host_devices(8) == f"--xla_force_host_platform_device_count=8 {wait}"
  # A jaxlib that rejects the wait flag (the cached answer of its probe) gets the count.
  cache = tmp_path / "c.json"
  version = xla_flags._jaxlib_version()
  cache.write_text(json.dumps({f"{version} {wait}": False}))
  assert (xla_flags.host_devices(8, cache=cache, known_good=()) ==
          "--xla_force_host_platform_device_count=8")
  for bad in (0, -2, 2.0, True, "8"):
    with pytest.raises(ValueError, match=r"^host_devices: n must be a positive integer, got "):
      xla_flags.host_devices(bad)


LATE_DEVICE = '''
import os, time, jax, jax.numpy as jnp
def late(v):   # the last device reaches the all-gather 4 s after the others
  time.sleep(float(v[0])); return v
f = jax.pmap(lambda v: jax.lax.all_gather(
    jax.pure_callback(late, jax.ShapeDtypeStruct(v.shape, v.dtype), v), "i"), axis_name="i")
print(f(jnp.array([[0.0]] * 7 + [[4.0]])).block_until_ready().shape)
'''


@pytest.mark.scale
@pytest.mark.parametrize("wait_s", [1, 60])
def test_the_collective_wait_is_the_one_xla_applies(wait_s):
  """With XLA's stuck warning moved to 1 s, a device 4 s late ends the process when the
  wait of ``host_devices`` is 1 s (XLA names that wait) and not when it is 60 s: the flag
  it writes is the one XLA's CPU rendezvous reads."""
  import os
  import subprocess
  import sys
  flags = (xla_flags.host_devices(8, wait_s=wait_s) +
           " --xla_cpu_collective_call_warn_stuck_timeout_seconds=1")
  env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", xla_flags.SWITCH: "0"}
  out = subprocess.run([sys.executable, "-c", LATE_DEVICE], env=env, capture_output=True,
                       text=True, timeout=300)
  if wait_s == 1:
    assert out.returncode != 0
    assert "Termination timeout for `all gather" in out.stderr
    assert "of 1 seconds exceeded" in out.stderr
  else:
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(8, 8, 1)"
