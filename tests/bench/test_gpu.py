"""The GPU section (dynconv_np.bench.gpu): its suite, its answer without a GPU, and one tiny
run under Numba's CUDA simulator (in a new process: the simulator is chosen before numba is
first imported)."""
import os
import subprocess
import sys

import pytest

from dynconv_np.bench import gpu, layers


def test_gpu_suite_is_the_cpu_suite_then_the_batched_layers():
    suite = gpu.gpu_suite()
    assert suite[:5] == layers.SUITE
    assert [(s.name, s.n) for s in suite[5:]] == [(f"L{i}@128", 128) for i in range(1, 5)]


def test_without_cuda_the_section_says_why_and_returns(monkeypatch, capsys):
    monkeypatch.setattr(gpu, "cuda_backend", lambda: (None, "no CUDA GPU here"))
    gpu.run(tiny=True, repeats=1)
    assert capsys.readouterr().out == "GPU section unavailable: no CUDA GPU here\n"


_SIMULATED_RUN = """\
import numpy as np
from dynconv_np.bench import gpu, main
layer = gpu.device_layer(gpu.TINY_SUITE[0])
assert not any(isinstance(layer.params[k], np.ndarray) for k in ("weight", "bias")), "to_device"
assert not any(isinstance(layer.grads[k], np.ndarray) for k in ("weight", "bias")), "to_device"
main(["--section", "gpu", "--tiny", "--repeats", "1"])
"""


def test_tiny_gpu_section_runs_on_the_simulator():
    pytest.importorskip("numba.cuda", reason="the GPU section needs numba-cuda "
                        "(pip install 'dynconv_np[cuda]')")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", _SIMULATED_RUN], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "GPU section: Numba CUDA simulator" in out
    assert "naive ms  tiled ms naive/tiled |    fwd ms  GFLOP/s    f+b ms" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("L")] == ["L1", "L3"]
