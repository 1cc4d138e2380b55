"""Is the endpoint client a bottleneck? Its request rate and per-request overhead against a stub that answers at once.

The stub (`workbench.endpoint.stub`, in its own process so it does not share the client's GIL) streams
`--tokens` canned chunks per request in one write on 127.0.0.1. The client sends `--requests` requests at
`--rate` req/s (the Poisson `rate` profile, open loop) and, in a second level, all at `--concurrency` in flight
(closed loop, the most it can push).

- **achieved rate** = successful requests / the level's window (first send to last chunk), rate level;
- **client overhead** of one request = its client-measured E2E (clock read just before the request is written
  to the last content chunk parsed) minus the stub's own handling time (request parsed to response built, sent
  back in the stub's `usage.stub_handling_s`). What is left is the client's work (JSON body, aiohttp request,
  reading and parsing every SSE line) plus two loopback hops and the stub's HTTP parsing: an upper bound on what
  the client adds to every request it measures. Reported at p50 over the rate level.
- **send lag** = actual send − scheduled send (open loop): how late the client fires when it is busy.

    .venv/bin/python benchmarks/loadgen_capacity.py [--rate 500] [--requests 3000] [--tokens 16]

Targets (issue 10, item 8): >= 500 streamed requests/s, <= 1 ms client overhead at p50; printed as ratios
(achieved / target, target / measured: >= 1 is met). Numbers describe the client on this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from workbench import runtime, stats
from workbench.endpoint import Level, LoadOptions, Target, run_levels


def start_stub() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.endpoint.stub", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    line = process.stdout.readline().strip()
    if not line.startswith("listening "):
        process.kill()
        raise SystemExit(f"the stub did not start: {line!r}")
    return process, line.split()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    process, url = start_stub()
    try:
        target = Target(url=url, model="stub", timeout_s=30)
        prompts = ["the quick brown fox"] * args.requests
        levels = [Level("rate", args.rate), Level("concurrency", args.concurrency)]
        rate_level, closed_level = run_levels(target, prompts, levels, LoadOptions(max_tokens=args.tokens, warmup=50))
    finally:
        process.terminate()
        process.wait(10)
    ok = [o for o in rate_level.outcomes if o.ok]
    window = rate_level.rows[0]["window_s"]
    achieved = len(ok) / window
    overhead = [(o.chunk_times[-1] - o.t0) - o.usage_raw["stub_handling_s"] for o in ok]
    lag = [r["sent_s"] - r["arrival_s"] for r in rate_level.rows]
    closed_ok = sum(o.ok for o in closed_level.outcomes)
    closed_rps = closed_ok / closed_level.rows[0]["window_s"]
    overhead_p50 = stats.percentile(overhead, 50)
    result = {
        "target_rps": args.rate,
        "achieved_rps": achieved,
        "rps_ratio": achieved / args.rate,
        "overhead_ms_p50": overhead_p50 * 1e3,
        "overhead_ms_p90": stats.percentile(overhead, 90) * 1e3,
        "overhead_ratio": 1e-3 / overhead_p50,
        "send_lag_ms_p50": stats.percentile(lag, 50) * 1e3,
        "send_lag_ms_p99": stats.percentile(lag, 99) * 1e3,
        "errors": len(rate_level.rows) - len(ok) + len(closed_level.rows) - closed_ok,
        "closed_loop_rps": closed_rps,
        "concurrency": args.concurrency,
        "requests": args.requests,
        "chunks_per_request": args.tokens,
        "cpus": os.cpu_count(),
        "load_before": runtime.load_average(),
    }
    for name, ratio in (("streamed requests/s vs 500", result["rps_ratio"]), ("1 ms vs overhead p50", None)):
        ratio = result["overhead_ratio"] if ratio is None else ratio
        print(f"{name}: {ratio:.2f}x (target >= 1x: {'met' if ratio >= 1 else 'MISSED'})")
    print(
        f"achieved {achieved:.0f} req/s at a {args.rate:.0f} req/s schedule, overhead p50 {overhead_p50 * 1e3:.3f} ms, "
        f"send lag p99 {result['send_lag_ms_p99']:.2f} ms; closed loop at {args.concurrency}: {closed_rps:.0f} req/s"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
