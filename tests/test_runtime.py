import os
import subprocess
import sys

import pytest

from workbench import runtime

LINUX = sys.platform == "linux"


@pytest.mark.skipif(not LINUX or runtime.find_optimised_blas() is None, reason="needs Linux with OpenBLAS installed")
def test_this_test_process_runs_with_the_optimised_blas():
    import mlx.core as mx

    mx.eval(mx.ones((4, 4)) @ mx.ones((4, 4)))
    assert runtime.active_blas().startswith("optimised")


@pytest.mark.skipif(not LINUX or runtime.find_optimised_blas() is None, reason="needs Linux with OpenBLAS installed")
def test_stock_process_is_seen_as_reference_blas_and_doctor_says_how_to_fix():
    env = {k: v for k, v in os.environ.items() if k not in {"LD_PRELOAD", "WORKBENCH_BLAS_REEXEC"}}
    env.update(WORKBENCH_NO_BLAS_REEXEC="1", WORKBENCH_BLAS="/nonexistent/libopenblas.so.0")
    code = (
        "import numpy, mlx_lm; from workbench import runtime; info, problems = runtime.doctor(); "
        "print(info['blas']); print(problems[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    blas, problem = out.strip().splitlines()
    assert blas.startswith("reference")
    assert runtime.FIX_COMMAND in problem


@pytest.mark.skipif(not LINUX or runtime.find_optimised_blas() is None, reason="needs Linux with OpenBLAS installed")
def test_cli_re_executes_itself_with_the_blas_preloaded():
    env = {k: v for k, v in os.environ.items() if k not in {"LD_PRELOAD", "WORKBENCH_BLAS_REEXEC"}}
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "doctor", "--json"], env=env, capture_output=True, text=True
    ).stdout
    assert '"blas": "optimised' in out.splitlines()[-1]
    # and one BLAS thread fewer than the cores (MLX's scheduler and Python keep one), unless the user set it
    assert f'"blas_threads": "{runtime.blas_threads()}"' in out.splitlines()[-1]
    env[runtime.BLAS_THREADS] = "3"
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "doctor", "--json"], env=env, capture_output=True, text=True
    ).stdout
    assert '"blas_threads": "3"' in out.splitlines()[-1]


def test_blas_env_adds_preload_only_when_available():
    env = runtime.blas_env({"PATH": "/bin"})
    if runtime.find_optimised_blas():
        assert runtime.find_optimised_blas() in env["LD_PRELOAD"]
        assert env[runtime.BLAS_THREADS] == str(max(1, len(os.sched_getaffinity(0)) - 1))
    else:
        assert "LD_PRELOAD" not in env and runtime.BLAS_THREADS not in env


def test_kernel_spec_carries_the_preload(kernel):
    import json
    from pathlib import Path

    spec = json.loads((Path(kernel) / "kernel.json").read_text())
    library, threads = runtime.find_optimised_blas(), str(runtime.blas_threads())
    assert spec["env"] == ({"LD_PRELOAD": library, runtime.BLAS_THREADS: threads} if library else {})
