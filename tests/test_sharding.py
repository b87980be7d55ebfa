"""Data parallelism over forced host devices: results must not depend on the device count.

Each test runs in its own subprocess with ``--xla_force_host_platform_device_count=8``
(the flag must be set before JAX starts), so the rest of the suite keeps one device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

FISHER_SCRIPT = textwrap.dedent('''
    import json, jax, jax.numpy as jnp, numpy as np
    import fmjax
    from fmjax.models import get_model
    from tests.conftest import TinyCNN, init_with_stats, rel_error
    assert len(jax.local_devices()) == 8
    out = {}
    x = jax.random.normal(jax.random.key(1), (37, 8, 8, 2))   # 37: no device count divides it
    y = jax.random.randint(jax.random.key(2), (37,), 0, 4)
    model = TinyCNN()
    params, state = init_with_stats(model, x)
    for kind in ("empirical", "true"):
      for path in ("per_layer", "vmap"):
        ref = fmjax.make_fisher_diag(model, state, kind=kind, path=path, chunk_size=5,
                                     devices=1).sum(params, {"image": x, "label": y})
        for n in (2, 8):
          fd = fmjax.make_fisher_diag(model, state, kind=kind, path=path, chunk_size=5,
                                      devices=n)
          got = fd.sum(params, {"image": x, "label": y})
          out[f"{kind}/{path}/{n}"] = [rel_error(got.total, ref.total),
                                       float(got.count), float(ref.count)]
    try:
      fmjax.make_fisher_diag(model, state, devices=9)
    except ValueError as e:
      out["error"] = str(e)
    print(json.dumps(out))
''')


def _run(script: str, devices: int = 8) -> dict:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, text=True,
                        capture_output=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def fisher_results():
  return _run(FISHER_SCRIPT)


@pytest.mark.parametrize("kind", ["empirical", "true"])
@pytest.mark.parametrize("path", ["per_layer", "vmap"])
@pytest.mark.parametrize("n", [2, 8])
def test_fisher_sums_do_not_depend_on_the_device_count(fisher_results, kind, path, n):
  err, count, ref_count = fisher_results[f"{kind}/{path}/{n}"]
  assert err < 1e-6
  assert count == ref_count == 37   # padding examples are never counted


def test_more_devices_than_the_process_has_is_a_clear_error(fisher_results):
  assert "devices must be an integer in 1..8" in fisher_results["error"]
