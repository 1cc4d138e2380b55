"""`workbench serve`: start `mlx_lm.server` on a model as a managed subprocess and keep it up until Ctrl-C.

It prints the URL, the model name to send in requests, the cold start (launch to a healthy
server with its model loaded) and the server log's path, then waits. Ctrl-C (or SIGTERM)
stops the server and exits 0; a killed `workbench serve` takes its server with it. Any
`mlx_lm.server` flag not listed here passes through unchanged.

    workbench serve --model default [--port 8080] [--decode-concurrency 8] [--kv-bits 8] [--json]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from workbench import console
from workbench.endpoint import server
from workbench.errors import ModelError


def setup_arg_parser() -> console.Parser:
    parser = console.parser("serve", "start mlx_lm.server on a model (managed; stops on Ctrl-C)")
    parser.add_argument("--model", default="default", help="preset, mlx-lm directory or Hugging Face repo id")
    parser.add_argument("--port", type=console.int_at_least(1, 65535), default=None, help="default: a free port")
    parser.add_argument("--log", type=Path, default=None, help="server log (default: outputs/servers/<id>.log)")
    parser.add_argument("--startup-timeout", type=console.int_at_least(1), default=180, help="seconds")
    parser.add_argument("--duration", type=_positive_seconds, default=None, help="stop after S seconds")
    positive = console.positive_int
    group = parser.add_argument_group("mlx_lm.server flags (others pass through as given)")
    group.add_argument("--decode-concurrency", type=positive)
    group.add_argument("--prompt-concurrency", type=positive)
    group.add_argument("--prefill-step-size", type=positive)
    group.add_argument("--prompt-cache-size", type=console.non_negative_int)
    group.add_argument("--prompt-cache-bytes", help="an integer or a size such as 2GB")
    group.add_argument("--kv-bits", type=console.int_at_least(1, 8))
    group.add_argument("--kv-group-size", type=positive)
    group.add_argument("--quantized-kv-start", type=console.non_negative_int)
    group.add_argument("--draft-model", help="a model spec, or quantised:BITS of --model")
    group.add_argument("--num-draft-tokens", type=positive)
    group.add_argument("--max-tokens", type=positive)
    parser.add_argument("--json", action="store_true", help="print the server's facts as one JSON line")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = setup_arg_parser()
    args, passthrough = parser.parse_known_args(argv)
    flags = {name: getattr(args, name) for name in server.SERVER_FLAGS if hasattr(args, name)}
    extra = server.server_args(**flags) + passthrough
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    running = None
    try:
        with server.serve(
            args.model, port=args.port, server_args=extra, log_path=args.log, startup_timeout_s=args.startup_timeout
        ) as running:
            _announce(running, as_json=args.json)
            _wait(running, args.duration)
    except KeyboardInterrupt:  # anywhere, even while printing: the server is stopped by then
        if running is None:
            print("workbench: interrupted before the server was ready", file=sys.stderr)
            return 130
    return 0


def _announce(running: server.Server, *, as_json: bool) -> None:
    for line in running.warnings:
        print(f"warning: {line}", file=sys.stderr)
    info = running.info()
    if as_json:
        console.print_json(info)
    else:
        console.print_table({k: info[k] for k in ("url", "model", "startup_s", "health_s", "dtype", "log_path")})
        print("serving; press Ctrl-C to stop")
    sys.stdout.flush()


def _wait(running: server.Server, duration: float | None) -> None:
    """Until Ctrl-C, the duration, or the server exiting by itself (then an error naming its log)."""
    end = None if duration is None else time.monotonic() + duration
    while end is None or time.monotonic() < end:
        time.sleep(0.2)
        if not running.is_running():
            raise ModelError(f"mlx_lm.server exited; log {running.log_path}: {server.log_tail(running.log_path)}")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(console.entry(main))
