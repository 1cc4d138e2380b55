"""Which MLX backend and which BLAS a process runs on, and the fingerprint every result carries.

`machine_fingerprint()` says which machine measured a run (chip, cores, memory, OS, backend, BLAS,
mlx and mlx-lm versions, a hash of the hostname, never the hostname itself), so numbers measured
on different machines are never pooled without a word: a sweep on a Dask cluster runs its points
on several.

On Linux the `mlx-cpu` wheel bundles the *reference* BLAS. An optimised one (Debian's
`libopenblas0-pthread`) preloaded with `LD_PRELOAD` makes fp32 matmuls an order of
magnitude faster. `LD_PRELOAD` only acts when a process starts, so entry points call
`ensure_optimised_blas()` first: it re-executes the process once with the library
preloaded. Jupyter kernels get it through the kernel spec's `env`.

The preloaded OpenBLAS runs on one thread fewer than the cores it may use (`OPENBLAS_NUM_THREADS`, unless set):
MLX's own scheduler thread and Python's need a core too, and a BLAS thread that waits for a descheduled sibling
stalls every matmul. On the 2-core build machine an A/A pair on `default` measured in a sweep's kernel went from
a per-round log-ratio SD of 0.118-0.202 with 2 BLAS threads to 0.084-0.103 with 1 (and ran ~10% faster): the
same precision in about half the rounds (docs/metrics.md, "Threads").

    workbench doctor
"""

from __future__ import annotations

import ctypes.util
import glob
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

FIX_COMMAND = "sudo apt-get install -y libopenblas0-pthread"
NO_REEXEC = "WORKBENCH_NO_BLAS_REEXEC"
_REEXEC_MARK = "WORKBENCH_BLAS_REEXEC"
_OPTIMISED = ("openblas", "mkl_rt", "libblis", "libflexiblas")


def find_optimised_blas() -> str | None:
    """Path of an optimised BLAS to preload on Linux, or None (and always None elsewhere)."""
    if sys.platform != "linux":
        return None
    override = os.environ.get("WORKBENCH_BLAS")
    if override:
        return override if Path(override).exists() else None
    patterns = [
        "/usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/*-linux-gnu/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
        "/usr/lib64/libopenblasp.so.0",
    ]
    for pattern in patterns:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    found = ctypes.util.find_library("openblas")
    return found if found and Path(found).is_absolute() else None


BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def blas_threads() -> int:
    """Threads for the preloaded BLAS: one fewer than the cores this process may run on (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def blas_env(env: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `env` (default: os.environ) with the optimised BLAS preloaded, if there is one, and its thread
    count (`BLAS_THREADS`) set to `blas_threads()` unless `env` already sets it."""
    env = dict(os.environ if env is None else env)
    library = find_optimised_blas()
    if library and library not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD")) if p)
    if library:
        env.setdefault(BLAS_THREADS, str(blas_threads()))
    return env


def needs_reexec() -> bool:
    """True on Linux when an optimised BLAS exists but this process did not start with it."""
    if sys.platform != "linux" or os.environ.get(NO_REEXEC) or os.environ.get(_REEXEC_MARK):
        return False
    library = find_optimised_blas()
    return library is not None and library not in os.environ.get("LD_PRELOAD", "")


def ensure_optimised_blas() -> None:
    """Re-execute this process once with the optimised BLAS preloaded (Linux only)."""
    if not needs_reexec():
        return
    env = blas_env()
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)


def active_blas() -> str:
    """The BLAS this process has loaded, by name, as seen in its memory map."""
    if sys.platform == "darwin":
        return "Accelerate"
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    libraries = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
    for library in sorted(libraries):
        name = Path(library).name.lower()
        # numpy's wheel bundles a symbol-prefixed OpenBLAS (scipy_openblas) that MLX cannot use
        if "scipy_openblas" in name:
            continue
        if any(candidate in name for candidate in _OPTIMISED):
            return f"optimised ({Path(library).name})"
    if any("mlx_cpu.libs" in lib and "libblas" in lib for lib in libraries):
        return "reference (bundled with mlx-cpu)"
    return "not loaded yet"


def backend() -> str:
    """'metal', 'cuda' or 'cpu': the device MLX computes on by default."""
    import mlx.core as mx

    if mx.default_device() == mx.gpu:
        if getattr(mx, "metal", None) is not None and mx.metal.is_available():
            return "metal"
        if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
            return "cuda"
        return "gpu"
    return "cpu"


def cpu_name() -> str:
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha() -> str | None:
    from workbench.paths import REPO_ROOT

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def host_hash() -> str:
    """A stable short hash of this machine's hostname: tells machines apart without naming them."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


HARDWARE = ("chip", "cores", "memory_bytes", "backend")  # what makes two machines' numbers incomparable


def machine_fingerprint() -> dict[str, Any]:
    """Which machine this process runs on: `env.json["machine"]` and the `machine_id`/`machine` row columns.
    `machine_id` hashes the hostname hash with the hardware; `label` is what a report prints."""
    from importlib.metadata import version

    import mlx.core as mx
    import psutil

    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "backend": backend(),
        "blas": active_blas(),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "host_hash": host_hash(),
    }
    gpu = mx.metal.device_info().get("device_name") if info["backend"] == "metal" else None
    info["chip"] = gpu or info["cpu"]
    identity = json.dumps([info["host_hash"], *(info[k] for k in HARDWARE)])
    info["machine_id"] = hashlib.sha256(identity.encode()).hexdigest()[:10]
    info["label"] = machine_label(info)
    return info


def machine_label(machine: dict[str, Any]) -> str:
    """'<chip>, <cores> cores, <GiB> GiB, <backend> (host <hash>)': one machine in a report or a summary."""
    memory_gib = (machine.get("memory_bytes") or 0) / 2**30
    return (
        f"{machine.get('chip')}, {machine.get('cores')} cores, {memory_gib:.0f} GiB, {machine.get('backend')} "
        f"(host {str(machine.get('host_hash'))[:6]})"
    )


def fingerprint() -> dict[str, Any]:
    """Hardware and software facts recorded in every run's env.json, with the machine's under `machine`."""
    from importlib.metadata import version

    import mlx.core as mx
    import psutil

    info = {
        "backend": backend(),
        "device": str(mx.default_device()),
        "blas": active_blas(),
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "git_sha": git_sha(),
        "load": load_average(),
    }
    if info["backend"] == "metal":
        info["gpu"] = mx.metal.device_info().get("device_name")
    info["machine"] = machine_fingerprint()
    return info


def doctor() -> tuple[dict[str, Any], list[str]]:
    """The fingerprint plus the problems that stop this machine from measuring well."""
    info = {**fingerprint(), "blas_threads": os.environ.get(BLAS_THREADS)}
    problems = []
    if sys.platform == "linux" and info["backend"] == "cpu" and not info["blas"].startswith("optimised"):
        if find_optimised_blas() is None:
            problems.append(f"no optimised BLAS found; fix with: {FIX_COMMAND}")
        else:
            problems.append(
                "an optimised BLAS is installed but not preloaded; run through `workbench` "
                "or set LD_PRELOAD=" + str(find_optimised_blas())
            )
    return info, problems
