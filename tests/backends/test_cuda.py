"""Tests of the ``cuda`` backend (``dynconv_np/backends/cuda.py``).

Design: Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first imported, and
by the time this module is collected other test modules have imported numba in this
process. So the kernel tests live in ``tests/cuda_sim/cuda_cases.py`` (a name that
a plain pytest run does not collect) and run here in a fresh interpreter, once per
session: on the GPU when this machine has a usable one, otherwise under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``). Each test function of that module is
mirrored by one test here that passes only if every case of it ran and passed, so
a failure is reported under its own name, with the child's report; one more test
checks the child run as a whole (exit status, at least one case, nothing skipped).

The other tests need a process *without* the simulator: the clear error when no GPU
can be used (``CUDA_VISIBLE_DEVICES=""`` hides a real one) or numba-cuda is missing,
and compiling every kernel to PTX for a real GPU, which the simulator (plain Python)
cannot check. That last one needs NVIDIA's NVVM library (``pip install nvidia-nvvm
nvidia-cuda-nvrtc``) and no GPU; without NVVM it is skipped and says so.
"""
import ast
import os
import pathlib
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cuda_sim" / "cuda_cases.py"
CASE_NAMES = [node.name for node in ast.parse(CASES.read_text()).body
              if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]


def _environment(**changes):
    """This process's environment with ``changes`` applied (None removes a variable)."""
    env = dict(os.environ)
    for name, value in changes.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _python(code, timeout=300, **env_changes):
    """Run ``code`` in a fresh interpreter without the simulator unless asked for."""
    env_changes.setdefault("NUMBA_ENABLE_CUDASIM", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=_environment(**env_changes))


def _real_gpu_present():
    """True when a CUDA GPU is usable here (asked in a process without the simulator)."""
    probe = _python("from numba import cuda; print(cuda.is_available())")
    return probe.returncode == 0 and probe.stdout.strip().endswith("True")


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """Run the kernel cases once: (where, exit status, output, {case id: failure text or None})."""
    gpu = _real_gpu_present()
    report = tmp_path_factory.mktemp("cuda") / "report.xml"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}"],
        cwd=ROOT, text=True, capture_output=True, timeout=1800,
        env=_environment(NUMBA_ENABLE_CUDASIM=None if gpu else "1"))
    output = completed.stdout + completed.stderr
    outcomes = {}
    if report.exists():
        for case in ElementTree.parse(report).iter("testcase"):
            problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
            outcomes[case.get("name")] = (
                None if not problems else
                "\n".join(f"{p.tag}: {p.get('message')}\n{p.text or ''}" for p in problems))
    return ("GPU" if gpu else "CUDA simulator"), completed.returncode, output, outcomes


@pytest.mark.parametrize("name", CASE_NAMES)
def test_kernel_case(cuda_run, name):
    where, _, output, outcomes = cuda_run
    cases = {case: result for case, result in outcomes.items()
             if case == name or case.startswith(name + "[")}
    assert cases, f"{name} did not run on the {where}; child output:\n{output[-4000:]}"
    failed = {case: text for case, text in cases.items() if text is not None}
    assert not failed, f"on the {where}:\n" + "\n".join(f"{c}:\n{t}" for c, t in failed.items())


def test_kernel_cases_ran_and_passed(cuda_run):
    where, returncode, output, outcomes = cuda_run
    assert returncode == 0, f"kernel cases on the {where} exited {returncode}:\n{output[-4000:]}"
    assert len(outcomes) >= len(CASE_NAMES) > 0
    assert all(result is None for result in outcomes.values())


_GET_BACKEND = """
    from dynconv_np.backends import get_backend
    try:
        get_backend("cuda")
    except RuntimeError as error:
        print(type(error).__name__, "|", error)
    else:
        print("no error")
"""


def test_no_usable_gpu_gives_a_clear_error():
    """Without a GPU (or with it hidden) and without the simulator: why, and what to do."""
    result = _python(_GET_BACKEND, CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stderr
    name, _, message = result.stdout.partition(" | ")
    assert name == "CudaUnavailableError", result.stdout
    assert "no usable CUDA GPU" in message
    assert "NUMBA_ENABLE_CUDASIM=1" in message and "before numba is first imported" in message
    assert "pip install dynconv_np[cuda]" in message


def test_missing_numba_cuda_gives_a_clear_error():
    """``from numba import cuda`` failing (numba-cuda absent) names the extra to install."""
    result = _python("import sys; sys.modules['numba.cuda'] = None\n" + textwrap.dedent(_GET_BACKEND))
    assert result.returncode == 0, result.stderr
    name, _, message = result.stdout.partition(" | ")
    assert name == "CudaUnavailableError", result.stdout
    assert "needs the numba-cuda package" in message
    assert "pip install dynconv_np[cuda]" in message and "NUMBA_ENABLE_CUDASIM=1" in message


_COMPILE_TO_PTX = """
    import numpy as np
    from numba import cuda, from_dtype, types

    def trivial(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(trivial, (types.float32[:],), cc=(8, 0))
    except Exception as error:
        text = " ".join(str(error).split())
        if any(sign in text.lower() for sign in ("cannot be found", "not found", "failure finding")):
            print("NO NVVM |", text[:300])
            raise SystemExit(0)
        raise

    from dynconv_np.backends import cuda_kernels as kernels

    for dtype in (np.float32,):   # float64 kernels are the same code with another type
        real, dt = from_dtype(np.dtype(dtype)), np.dtype(dtype)
        a = lambda ndim, layout="C": types.Array(real, ndim, layout)
        geometry = (types.int64,) * 7
        forward, backward_input, backward_weight, backward_bias = kernels.naive_kernels(dt)
        checks = [(backward_input, (a(4), a(5), a(4)) + geometry),
                  (backward_weight, (a(4), a(4), a(5)) + geometry),
                  (backward_bias, (a(4), a(2))),
                  (kernels.matmul_kernel(dt), (a(2), a(2), a(2), types.boolean, types.boolean))]
        checks += [(kernel, (a(4), a(2))) for kernel in kernels.pooling_kernels(dt)]
        for bias in (a(2), types.none):
            checks.append((forward, (a(4), a(5), bias, a(4)) + geometry))
            checks.append((kernels.tiled_forward_kernel(dt, 8),
                           (a(4), a(5), bias, a(4)) + geometry + (types.int64,)))
        for kernel, signature in checks:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(8, 0))
            assert ".entry" in ptx
        print("compiled", len(checks), dtype.__name__)
"""


def test_every_kernel_compiles_for_a_real_gpu():
    """The simulator runs kernels as Python; this checks Numba can compile them to PTX."""
    result = _python(_COMPILE_TO_PTX, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    if result.stdout.startswith("NO NVVM"):
        pytest.skip("NVVM is not installed (pip install nvidia-nvvm nvidia-cuda-nvrtc): "
                    + result.stdout.partition("|")[2].strip())
    assert result.stdout.split() == ["compiled", "10", "float32"], result.stdout
