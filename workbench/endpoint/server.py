"""`mlx_lm.server` as a managed subprocess: a free port, the optimised BLAS, its log kept, and no orphan.

It measures the cold start: `startup_s` runs from launch to a server that answers `/health`
*with its model loaded*. mlx-lm reports healthy while its generation thread is still
loading the model, so the server is started through a small launcher (this module's
`__main__`) that writes a marker to the log when the load ends; `health_s` is the first
healthy answer alone. The first request's cold TTFT is the endpoint client's to measure.

The server goes away on exit, exception, Ctrl-C, and when the parent dies, on Linux and
macOS alike: its stdin is a pipe that the parent holds and never writes to, and a watchdog
thread in the server exits at that pipe's end-of-file (or when the server is re-parented).

    with serve("nano", server_args=server_args(decode_concurrency=8)) as server:
        post(f"{server.url}/v1/completions", {"model": server.model, ...})

    workbench serve --model default [--port P] [server flags]
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TextIO

from workbench.endpoint.server_log import READY_MARKER, log_tail, open_log, read_log
from workbench.errors import ConfigError, ModelError

PARENT_ENV = "WORKBENCH_SERVER_PARENT"
# the mlx_lm.server (mlx-lm 0.32) options a caller or a sweep point sets by name; others pass through as flags
SERVER_FLAGS = {
    "decode_concurrency": int,
    "prompt_concurrency": int,
    "prefill_step_size": int,
    "prompt_cache_size": int,
    "prompt_cache_bytes": str,  # an integer or a size such as "2GB"
    "kv_bits": int,
    "kv_group_size": int,
    "quantized_kv_start": int,
    "draft_model": str,
    "num_draft_tokens": int,
    "max_tokens": int,
    "temp": float,
    "log_level": str,
    "chat_template_args": str,
}
MODEL_FLAGS = ("--draft-model",)  # their values are model specs, resolved like --model
OWN_FLAGS = ("--model", "--host", "--port")
_CONFIG_HINTS = ("error: argument", "unrecognized arguments", "invalid choice", "Address already in use")


@dataclass
class Server:
    """A running `mlx_lm.server`; `model` is the name to send in requests (the one `/v1/models` lists)."""

    url: str
    model: str
    port: int
    pid: int
    log_path: Path
    startup_s: float  # launch -> healthy with its model loaded
    args: list[str]  # the server flags used, besides --model/--host/--port
    health_s: float = float("nan")  # launch -> first healthy /health
    dtype: str | None = None  # the checkpoint's floating dtype, which the server computes in
    model_spec: str = ""
    warnings: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """Facts for a run's env.json: where, what, how it was started and how long the cold start took."""
        from importlib.metadata import version

        return {**asdict(self), "log_path": str(self.log_path), "mlx_lm": version("mlx-lm")}

    def is_running(self) -> bool:
        """False once the server process has exited (always True for a Server not started by `serve`)."""
        process = getattr(self, "_process", None)
        return process is None or process.poll() is None


def server_args(**flags: Any) -> list[str]:
    """`mlx_lm.server` flags from named options: `decode_concurrency=8` -> `--decode-concurrency 8`;
    None is left out, True is a bare flag, an unknown name is a ConfigError."""
    out: list[str] = []
    for name, value in flags.items():
        if name not in SERVER_FLAGS:
            raise ConfigError(f"server option {name!r} is unknown; choose from {', '.join(SERVER_FLAGS)}")
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
            continue
        try:
            SERVER_FLAGS[name](value)
        except (TypeError, ValueError):
            raise ConfigError(f"server option {name}={value!r}: expected {SERVER_FLAGS[name].__name__}") from None
        out += [flag, str(value)]
    return out


def resolve_model(spec: str, *, base: str | None = None) -> str:
    """A model spec as `mlx_lm.server --model` takes it: the absolute directory of a preset, a local
    directory or (with `base`, the served model) a derived `quantised:BITS`; a Hugging Face id as is."""
    from workbench.models import loader
    from workbench.optimise import derived, quantise

    spec = str(spec)
    if derived.is_derived(spec):
        derived.check(spec)
        if base is None or spec == "distilled":
            raise ConfigError(f"model spec {spec!r} cannot be served; give a preset, a directory or quantised:BITS")
        return str(quantise.quantised(base, bits=int(spec.split(":", 1)[1])))
    target, _ = loader.resolve(spec)
    return str(target)


def checkpoint_dtype(model_dir: str | Path) -> str | None:
    """The floating dtype most of a checkpoint's elements are stored in, read from the safetensors headers."""
    names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}
    counts: dict[str, int] = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with file.open("rb") as fh:
                header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        except (OSError, ValueError):
            return None
        for key, tensor in header.items():
            if key != "__metadata__" and tensor.get("dtype") in names:
                size = 1
                for dim in tensor.get("shape", []):
                    size *= dim
                counts[names[tensor["dtype"]]] = counts.get(names[tensor["dtype"]], 0) + size
    return max(counts, key=counts.__getitem__) if counts else None


def free_port(port: int = 0) -> int:
    """A port on 127.0.0.1 that nothing listens on: `port` itself (a ConfigError if taken), or any when 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(f"port {port} on 127.0.0.1 is not free ({exc.strerror or exc})") from None
        chosen: int = sock.getsockname()[1]
        return chosen


def resolve_args(args: Sequence[str], base: str) -> list[str]:
    """The pass-through flags with model-valued ones (`--draft-model SPEC`) resolved; the managed ones refused."""
    args, out = list(args), []
    for i, arg in enumerate(args):
        name = arg.split("=", 1)[0]
        if name in OWN_FLAGS:
            raise ConfigError(f"server flag {name} is set by `serve` itself (give the model and port to it)")
        if i and args[i - 1] in MODEL_FLAGS:
            arg = resolve_model(arg, base=base)
        elif name in MODEL_FLAGS and "=" in arg:
            arg = f"{name}={resolve_model(arg.split('=', 1)[1], base=base)}"
        out.append(arg)
    return out


def default_log_path() -> Path:
    from workbench import paths
    from workbench.results import store

    return paths.outputs_dir() / "servers" / f"{store.new_run_id('serve')}.log"


@contextlib.contextmanager
def serve(
    model: str,
    *,
    port: int | None = None,
    server_args: Sequence[str] = (),
    log_path: Path | None = None,
    startup_timeout_s: float = 180.0,
) -> Iterator[Server]:
    """Start `mlx_lm.server` on `model` (any workbench spec) on 127.0.0.1, wait until it is ready, yield it,
    and stop it however the block ends. A server that exits or is not ready within `startup_timeout_s` is a
    one-line error with the last lines of its log."""
    model_dir = resolve_model(model)
    args = resolve_args(server_args, base=model)
    log_path = Path(log_path) if log_path else default_log_path()
    for attempt in range(3):  # a free port can be taken between choosing it and binding it
        chosen = free_port(port or 0)
        proc, started, log_start = _launch(model_dir, chosen, args, log_path)
        try:
            health_s = _wait_ready(proc, chosen, (log_path, log_start), started, startup_timeout_s)
            break
        except ConfigError as exc:
            stop(proc)
            if port is None and "Address already in use" in str(exc) and attempt < 2:
                continue
            raise
        except BaseException:
            stop(proc)
            raise
    try:
        server = Server(
            url=f"http://127.0.0.1:{chosen}",
            model=model_dir,
            port=chosen,
            pid=proc.pid,
            log_path=log_path,
            startup_s=time.perf_counter() - started,
            args=args,
            health_s=health_s,
            dtype=checkpoint_dtype(model_dir) if Path(model_dir).is_dir() else None,
            model_spec=str(model),
        )
        server.warnings = dtype_warnings(server.dtype)
        server._process = proc  # type: ignore[attr-defined]  # not a field: info()'s asdict never copies it
        yield server
    finally:
        stop(proc)


def dtype_warnings(dtype: str | None) -> list[str]:
    from workbench import runtime

    if dtype in ("bfloat16", "float16") and runtime.backend() == "cpu":
        return [f"the server computes in the checkpoint's {dtype}, which is several times slower on CPU than float32"]
    return []


def _child_env(model_dir: str) -> dict[str, str]:
    from workbench import paths, runtime

    env = runtime.blas_env()
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())
    if Path(model_dir).is_dir() and not ({"HF_HUB_CACHE", "HF_HOME"} & set(env)):
        from huggingface_hub import constants

        # mlx-lm's /v1/models fails when the Hugging Face cache folder does not exist; a local model needs none
        if not Path(constants.HF_HUB_CACHE).is_dir():
            empty = paths.cache_dir() / "hf-hub-empty"
            empty.mkdir(parents=True, exist_ok=True)
            env["HF_HUB_CACHE"] = str(empty)
    return env


def _launch(model_dir: str, port: int, args: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], float, int]:
    log, start = open_log(log_path)
    command = [sys.executable, "-m", "workbench.endpoint.server", "--model", model_dir]
    command += ["--host", "127.0.0.1", "--port", str(port), *args]
    started = time.perf_counter()
    with log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,  # held open by this process: its end-of-file tells the server we are gone
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(model_dir),
            start_new_session=True,  # Ctrl-C reaches this process, which stops the server in order
        )
    return proc, started, start


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            status: int = reply.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, log: tuple[Path, int], started: float, timeout_s: float
) -> float:
    """Seconds from launch to the first healthy /health; returns once the model is loaded too. `log`: the log's
    path and where this launch's part of it starts."""
    log_path, log_start = log
    health_s = None
    while True:
        if proc.poll() is not None:
            _fail(f"mlx_lm.server exited with code {proc.returncode} before it was ready", log_path, log_start)
        status = _health(port) if health_s is None else 200
        if status == 200 and health_s is None:
            health_s = time.perf_counter() - started
        elif status == 503:
            _fail("mlx_lm.server reports unhealthy (its generation thread died)", log_path, log_start)
        if health_s is not None and READY_MARKER in read_log(log_path, log_start):
            return health_s
        if time.perf_counter() - started > timeout_s:
            _fail(f"mlx_lm.server was not ready within {timeout_s:g} s", log_path, log_start)
        time.sleep(0.05)


def _fail(problem: str, log_path: Path, start: int = 0) -> NoReturn:
    tail = log_tail(log_path, start=start)
    error = ConfigError if any(hint in tail for hint in _CONFIG_HINTS) else ModelError
    raise error(f"{problem}; log {log_path}: {tail}")


def stop(proc: subprocess.Popen[bytes], *, grace_s: float = 5.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after `grace_s`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdin:
        with contextlib.suppress(OSError):
            proc.stdin.close()


# ------------------------------------------------------------ the launcher, run inside the server process


def watch_parent(parent_pid: int, stream: TextIO | None = None) -> None:
    """Exit this process when its parent is gone: the stdin pipe reaches end-of-file, or it is re-parented."""
    stream = stream if stream is not None else sys.stdin
    while True:
        readable, _, _ = select.select([stream], [], [], 0.5)
        if (readable and not os.read(stream.fileno(), 4096)) or os.getppid() != parent_pid:
            os._exit(0)


def main(argv: list[str]) -> None:
    """Run `mlx_lm.server` with the parent watchdog and the model-loaded marker."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    from mlx_lm import server as mlx_server

    provider = getattr(mlx_server, "ModelProvider", None)
    original = getattr(provider, "load_default", None)
    if provider is None or original is None:  # another mlx-lm: healthy is as ready as we can tell
        print(READY_MARKER, file=sys.stderr, flush=True)
    else:

        def load_default(self: Any) -> None:
            try:
                original(self)
            except BaseException:
                import traceback

                traceback.print_exc()
                print("workbench-endpoint: the model failed to load", file=sys.stderr, flush=True)
                os._exit(3)
            print(READY_MARKER, file=sys.stderr, flush=True)

        provider.load_default = load_default
    sys.argv = ["mlx_lm.server", *argv]
    try:
        mlx_server.main()  # type: ignore[no-untyped-call]  # mlx-lm's main is unannotated
    except BaseException as exc:  # e.g. the port is taken: mlx-lm's generation thread would keep the process alive
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            os._exit(0)
        if not isinstance(exc, SystemExit):
            import traceback

            traceback.print_exc()
        sys.stderr.flush()
        os._exit(exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 4)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
