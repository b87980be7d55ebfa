"""The one place fmjax sets XLA flags: a faster CPU convolution setting, on request, and
the flags of forced host devices.

On CPU, jaxlib 0.10 routes most convolutions into YNNPACK fusions, which are
slower on the 2-core x86 machines this project measures on; the flag
``--xla_cpu_experimental_ynn_fusion_type=individual_dot`` keeps YNNPACK for
plain dot products only and speeds a ResNet20 training step up by about 1.3x
(147 -> 186-198 examples/s, measured with ``make bench-fisher``).

It is an experimental flag: a jaxlib that does not know it aborts every
program at start-up, on every backend. So :func:`configure` adds it only

* when it is not switched off (``FMJAX_CPU_XLA_FLAG=0``) and the user's own
  ``XLA_FLAGS`` do not set it already;
* when the CPU is the backend JAX will use: ``JAX_PLATFORMS`` is unset and no
  GPU/TPU plugin is installed, or ``JAX_PLATFORMS`` names cpu first;
* when the installed jaxlib accepts it: known for the versions it was
  measured on, otherwise probed once in a subprocess and the answer cached
  per jaxlib version in ``~/.cache/fmjax/xla_flags.json``.

Importing fmjax changes nothing in the environment. fmjax's entry points (the
``python -m fmjax`` CLI, ``python -m experiments.run``, the benchmarks and the
test suite) call :func:`configure` first; research code that wants the same
speed calls ``fmjax.xla_flags.configure()`` before its first JAX computation
(XLA reads ``XLA_FLAGS`` when the first backend starts, not at ``import jax``).

:func:`host_devices` writes the flags for a process that simulates ``n`` devices on
the CPU (the sharding tests, ``make bench-scale``): the device count, and a longer
wait for a collective. XLA's CPU runtime aborts the whole process when one device
reaches a collective more than 20 + 40 seconds after the others. That happened once
in CI, to 8 simulated devices on 2 shared cores (``test_sharding``'s whole FisherMask
run); what held the device back is not known (18 reruns of that run here, two
8-device processes at a time, never had a device wait 2 seconds). The wait is
raised to :data:`COLLECTIVE_WAIT_S`; a device that never arrives still ends the
process, with XLA's message.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
SWITCH = "FMJAX_CPU_XLA_FLAG"
# jaxlib versions on which CPU_FLAG was measured and known to be accepted.
KNOWN_GOOD = ("0.10.",)
# Seconds a CPU collective waits, after XLA's 20-second "may be stuck" warning, for the
# last device before XLA aborts the process (XLA's default: 40).
COLLECTIVE_WAIT_FLAG = "--xla_cpu_collective_call_terminate_timeout_seconds"
COLLECTIVE_WAIT_S = 120
_MEASURED = (CPU_FLAG.split("=")[0], COLLECTIVE_WAIT_FLAG)
_ACCELERATOR_PLUGINS = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")


def _jaxlib_version() -> str | None:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu_is_the_backend(environ: dict | None = None) -> bool:
  """Whether JAX will run on the CPU (so a CPU flag is worth setting)."""
  environ = os.environ if environ is None else environ
  platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  names = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
  return not any(n.startswith(_ACCELERATOR_PLUGINS) for n in names)


def _probe(flag: str) -> bool:
  """Whether a fresh process with ``flag`` in XLA_FLAGS starts a CPU backend."""
  env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu", SWITCH: "0"}
  code = "import jax; jax.numpy.zeros(1).block_until_ready()"
  try:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         timeout=120)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return out.returncode == 0


def flag_accepted(flag: str, *, cache: pathlib.Path | None = None,
                  known_good: tuple[str, ...] = KNOWN_GOOD) -> bool:
  """Whether the installed jaxlib accepts ``flag``: known, cached, or probed once."""
  version = _jaxlib_version()
  if version is None:
    return False
  if flag.split("=")[0] in _MEASURED and version.startswith(known_good):
    return True
  cache = cache or pathlib.Path.home() / ".cache" / "fmjax" / "xla_flags.json"
  key = f"{version} {flag}"
  try:
    answers = json.loads(cache.read_text())
  except (OSError, ValueError):
    answers = {}
  if key not in answers:
    answers[key] = _probe(flag)
    try:
      cache.parent.mkdir(parents=True, exist_ok=True)
      tmp = cache.with_suffix(f".{os.getpid()}.tmp")
      tmp.write_text(json.dumps(answers, indent=1, sort_keys=True))
      tmp.replace(cache)
    except OSError:
      pass   # a read-only home: probe again next time
  return bool(answers[key])


def configure(flag: str = CPU_FLAG, **kwargs) -> bool:
  """Adds ``flag`` to ``$XLA_FLAGS`` when the rules above allow; True if added."""
  if os.environ.get(SWITCH, "1") == "0":
    return False
  current = os.environ.get("XLA_FLAGS", "")
  if flag.split("=")[0] in current:
    return False
  if not cpu_is_the_backend() or not flag_accepted(flag, **kwargs):
    return False
  os.environ["XLA_FLAGS"] = (current + " " + flag).strip()
  return True


def host_devices(n: int, *, wait_s: int = COLLECTIVE_WAIT_S, **kwargs) -> str:
  """``XLA_FLAGS`` for a process that simulates ``n`` CPU devices.

  The device count, and (for ``n > 1``, where jaxlib accepts the flag) a collective
  wait of ``wait_s`` seconds instead of XLA's 40 (after its 20-second warning). Append
  the result to ``XLA_FLAGS`` before JAX starts (a subprocess's environment, or an entry
  point's first lines).
  """
  if not isinstance(n, int) or isinstance(n, bool) or n < 1:
    raise ValueError(f"host_devices: n must be a positive integer, got {n!r}.")
  flags = [f"--xla_force_host_platform_device_count={n}"]
  wait = f"{COLLECTIVE_WAIT_FLAG}={int(wait_s)}"
  if n > 1 and flag_accepted(wait, **kwargs):
    flags.append(wait)
  return " ".join(flags)
