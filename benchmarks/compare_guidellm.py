"""GuideLLM 0.8.1 and `workbench bench --target` against the same `mlx_lm.server`: TTFT and TPOT medians agree.

GuideLLM is installed into a venv of its own under the workbench cache, never into the
project (it pulls torch: the CPU wheel `torch==2.13.0` goes in first, so pip does not fetch
a CUDA build). One `mlx_lm.server` on the model, started by `workbench.endpoint.server.serve`,
serves both tools the same synthetic workload: 128-token prompts and exactly 64 generated
tokens. The server ignores `ignore_eos`, so the end-of-sequence tokens are suppressed with
`logit_bias`, which GuideLLM sends through its backend's `extras.body` (the workbench's
client does the same). After an untimed warm-up the tools alternate, GuideLLM then workbench,
at each concurrency (1 and 4), for `--rounds` rounds. Each run is `--requests` requests from one
start (the workbench with `--trials 1 --warmup 0`, as a GuideLLM run); a figure is the p50 over
every request of every round, computed the same way (`workbench.stats`) from both tools'
per-request times (the median over rounds of each run's median is printed beside it). GuideLLM's
"ITL" is our TPOT (docs/metrics.md) and both take TTFT from the request's send to the first
content chunk; GuideLLM runs with one worker process. Target: workbench/GuideLLM ratios of TTFT
p50 and TPOT p50 within +-10%.

Load shape (printed per tool): mlx_lm.server 0.32 admits queued requests into its batch only
between slices of up to 0.5 s of steps, so with equal-length requests a request that arrives while
a batch runs waits for the whole batch. The workbench's closed loop sends the next request within
0.1 ms of a completion and its first C at once, so its C streams often stay a convoy (prefilled
together: TTFT = one batched prefill); GuideLLM's dispatch takes 5-50 ms (its own timings), its
first request runs alone and the rest settle into groups that queue behind each other. At c>1 the
two closed loops therefore load the server differently: the time from send to the end of prefill
(server log) differs, the time from there to the client's first chunk does not. Those rows still
count in the verdict (the target is stated for c=1 and c=4); the load-shape lines say why they miss.

    .venv/bin/python benchmarks/compare_guidellm.py [--model default] [--requests 24] [--rounds 2]
        [--concurrency 1 4] [--prompt-tokens 128] [--gen-tokens 64] [--guidellm-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import polars as pl

GUIDELLM = "0.8.1"
TORCH = "2.13.0"  # the local CPU wheel; installed before guidellm so pip keeps it
TOLERANCE = 0.10
EOS_BIAS = -100.0
REPO = Path(__file__).resolve().parent.parent


def ensure_guidellm(venv: Path) -> Path:
    """The `guidellm` executable of a venv of its own, created on first use."""
    exe = venv / "bin" / "guidellm"
    if exe.exists():
        return exe
    print(f"installing GuideLLM {GUIDELLM} (and torch {TORCH}, CPU) into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={TORCH}"], check=True)
    subprocess.run([*pip, f"guidellm=={GUIDELLM}"], check=True)
    return exe


def eos_ids(model_dir: str) -> list[int]:
    from mlx_lm.utils import load_tokenizer

    return sorted(load_tokenizer(Path(model_dir)).eos_token_ids)


def scenario(url: str, model: str, model_dir: str, *, concurrency: int, requests: int, args, bias: dict, out: Path):
    """A GuideLLM scenario: the OpenAI HTTP backend on /v1/completions, synthetic text of exact token lengths."""
    return {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": url,
                "model": model,
                "request_format": "/v1/completions",
                "extras": {"body": {"logit_bias": bias}},
            },
            "profile": {"kind": "concurrent", "streams": concurrency},
            "data": [{"kind": "synthetic_text", "prompt_tokens": args.prompt_tokens, "output_tokens": args.gen_tokens}],
            "tokenizer": {"kind": "huggingface_auto", "model": model_dir},
            "constraints": [{"kind": "max_requests", "count": requests}],
            "outputs": [{"kind": "json", "path": str(out)}],
        }
    }


def run_guidellm(exe: Path, spec: dict, work: Path, workers: int) -> dict:
    """One GuideLLM run; its own medians, and the same figures recomputed per request with workbench.stats."""
    from workbench import stats

    path = work / "scenario.json"
    path.write_text(json.dumps(spec, indent=1))
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(HF_HUB_OFFLINE="1", GUIDELLM__MAX_WORKER_PROCESSES=str(workers))
    command = [str(exe), "run", "--config", str(path), "--disable-console"]
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=1800)
    out = Path(spec["spec"]["outputs"][0]["path"])
    if proc.returncode != 0 or not out.exists():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"guidellm failed (exit {proc.returncode}): {tail}")
    bench = json.loads(out.read_text())["benchmarks"][0]
    metrics, requests = bench["metrics"], bench["requests"]
    ttft, tpot, lengths, timelines = [], [], [], []
    for request in requests["successful"]:
        t = request["info"]["timings"]
        n = request["output_metrics"]["text_tokens"]
        lengths.append(n)
        ttft.append(t["first_token_iteration"] - t["request_start"])
        if n > 1:
            tpot.append((t["last_token_iteration"] - t["first_token_iteration"]) / (n - 1))
        timelines.append((t["request_start"], t["first_token_iteration"], t["last_token_iteration"], n))
    return {
        "ttft_s": metrics["time_to_first_token_ms"]["successful"]["median"] / 1000,
        "tpot_s": metrics["inter_token_latency_ms"]["successful"]["median"] / 1000,
        "ttft_s_per_request": stats.percentile(ttft, 50),
        "tpot_s_per_request": stats.percentile(tpot, 50),
        "completed": len(requests["successful"]),
        "errored": len(requests["errored"]) + len(requests["incomplete"]),
        "generated_tokens_min": min(lengths, default=0),
        "generated_tokens_max": max(lengths, default=0),
        "timelines": relative(timelines),
    }


def relative(timelines: list[tuple]) -> list[tuple]:
    """(sent, first token, last token, tokens) per request, times in seconds from the run's first send."""
    start = min((t[0] for t in timelines), default=0.0)
    return sorted((sent - start, first - start, last - start, n) for sent, first, last, n in timelines)


def run_workbench(url: str, model: str, *, concurrency: int, requests: int, args) -> dict:
    """`workbench bench --target` (the endpoint client) on the same server; its last output line is JSON."""
    command = [sys.executable, "-m", "workbench.cli", "bench", "--target", url, "--model", model]
    command += ["--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens)]
    command += ["--concurrency", str(concurrency), "--requests", str(requests), "--json"]
    command += ["--trials", "1", "--warmup", "0"]  # as a GuideLLM run: `requests` requests from one start
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
        raise RuntimeError(f"workbench bench --target failed (exit {proc.returncode}): {tail}")
    summary = json.loads(lines[-1])
    keys = ("ttft_s", "tpot_s", "error_rate", "generated_tokens_mean")
    rows = pl.read_parquet(Path(summary["run_dir"]) / "results.parquet").filter(pl.col("ok")).to_dicts()
    timelines = [
        (r["sent_s"], r["sent_s"] + r["ttft_s"], r["sent_s"] + r["e2e_s"], r["generated_tokens"]) for r in rows
    ]
    return {**{key: summary.get(key) for key in keys}, "timelines": relative(timelines)}


def load_shape(runs: list[dict], concurrency: int) -> dict:
    """How a tool's requests met the server, from the per-request timelines of its runs: the spread of the first
    `concurrency` sends, the gap from a completion to the next send (closed loop: the tool's dispatch delay), and
    the share of requests prefilled in a full convoy (first token within 3 ms of `concurrency - 1` others)."""
    from workbench import stats

    spread, refill, convoy, count = [], [], 0, 0
    for run in runs:
        lines = run["timelines"]
        spread.append(lines[concurrency - 1][0] - lines[0][0] if len(lines) >= concurrency else float("nan"))
        for sent, *_ in lines[concurrency:]:
            done = [last for _, _, last, _ in lines if last <= sent]
            if done:
                refill.append(sent - max(done))
        convoy += sum(sum(abs(f - first) < 0.003 for _, f, _, _ in lines) >= concurrency for _, first, _, _ in lines)
        count += len(lines)
    return {
        "start_spread_ms": stats.percentile(spread, 50) * 1000,
        "refill_ms_p50": stats.percentile(refill, 50) * 1000,
        "refill_ms_p90": stats.percentile(refill, 90) * 1000,
        "convoy_share": convoy / count if count and concurrency > 1 else float("nan"),
    }


def pooled(runs: list[dict], key: str) -> float:
    """The p50 over every request of every round (one estimator for both tools, from their per-request times)."""
    from workbench import stats

    values = []
    for run in runs:
        for sent, first, last, n in run["timelines"]:
            values.append(first - sent if key == "ttft_s" else (last - first) / (n - 1) if n > 1 else float("nan"))
    return stats.percentile(values, 50)


def brief(run: dict) -> str:
    return json.dumps({key: value for key, value in run.items() if key != "timelines"})


def warm_up(url: str, model: str, concurrency: int, bias: dict, gen_tokens: int) -> None:
    """Untimed: `concurrency` requests at once, so both tools meet a server past its first (cold) requests."""
    body = {"model": model, "prompt": "warm up " * 60, "max_tokens": gen_tokens, "logit_bias": bias}

    def send():
        request = urllib.request.Request(
            f"{url}/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as reply:
            reply.read()

    threads = [threading.Thread(target=send) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def warn_short(results: dict, gen_tokens: int) -> None:
    """Both tools must generate the asked length, or their TPOTs are not comparable."""
    for c, runs in results.items():
        if any(run["generated_tokens_min"] < gen_tokens for run in runs["guidellm"]):
            print(f"warning: GuideLLM generated fewer than {gen_tokens} tokens at concurrency {c}")
        if any((run.get("generated_tokens_mean") or 0) < gen_tokens for run in runs["workbench"]):
            print(f"warning: the workbench generated fewer than {gen_tokens} tokens at concurrency {c}")


def median_over_rounds(runs: list[dict], key: str) -> float:
    from workbench import stats

    return stats.percentile([run[key] for run in runs if isinstance(run, dict) and run.get(key) is not None], 50)


def print_comparison(results: dict, concurrencies: list[int]) -> tuple[dict, bool]:
    """p50 over all requests of all rounds (and the median over rounds of each run's median), then each tool's
    load shape. Every row counts in the verdict; where the load shapes differ (c>1) the printout says so."""
    ratios, ok = {}, True
    print(f"\n{'':16}{'GuideLLM':>12}{'workbench':>12}{'ratio':>8}   median of run medians: GuideLLM, workbench")
    for c in concurrencies:
        theirs_runs, ours_runs = results[c]["guidellm"], results[c]["workbench"]
        for key, label in (("ttft_s", "TTFT p50"), ("tpot_s", "TPOT p50")):
            theirs, ours = pooled(theirs_runs, key), pooled(ours_runs, key)
            ratio = ours / theirs if theirs and ours == ours else float("nan")
            ratios[f"c{c}_{key}_ratio"] = ratio
            ok = ok and abs(ratio - 1) <= TOLERANCE
            per_run = [median_over_rounds(runs, key) * 1000 for runs in (theirs_runs, ours_runs)]
            print(
                f"{label + f' (c={c})':16}{theirs * 1000:10.2f}ms{ours * 1000:10.2f}ms{ratio:8.3f}"
                f"   {per_run[0]:.2f}, {per_run[1]:.2f} ms{'  (load shapes differ: see below)' if c > 1 else ''}"
            )
    print("\nload shape: first sends' spread, completion-to-next-send gap (p50/p90), share prefilled in a full convoy")
    for c in concurrencies:
        for tool in ("guidellm", "workbench"):
            shape = load_shape(results[c][tool], c)
            ratios[f"c{c}_{tool}_load_shape"] = shape
            print(
                f"  c={c} {tool:10} spread {shape['start_spread_ms']:6.1f} ms  gap {shape['refill_ms_p50']:5.1f} / "
                f"{shape['refill_ms_p90']:5.1f} ms  convoy {shape['convoy_share']:.0%}"
            )
    return ratios, ok


def main() -> int:
    from workbench import paths, runtime

    runtime.ensure_optimised_blas()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=24, help="per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--guidellm-workers", type=int, default=1)
    parser.add_argument("--guidellm-only", action="store_true", help="skip the workbench half")
    parser.add_argument("--venv", type=Path, default=None, help=f"default: <cache>/guidellm-{GUIDELLM}")
    args = parser.parse_args()

    from workbench.endpoint.server import serve

    exe = ensure_guidellm(args.venv or paths.cache_dir() / f"guidellm-{GUIDELLM}")
    work = paths.outputs_dir() / "benchmarks" / "compare_guidellm"
    work.mkdir(parents=True, exist_ok=True)
    results = {c: {"guidellm": [], "workbench": []} for c in args.concurrency}
    with serve(args.model, log_path=work / "server.log") as server:
        bias = {str(token): EOS_BIAS for token in eos_ids(server.model)}
        print(
            f"mlx_lm.server on {args.model} ({server.dtype}) at {server.url}: cold start {server.startup_s:.2f} s; "
            f"{args.prompt_tokens} prompt / {args.gen_tokens} generated tokens, {args.requests} requests a run, "
            f"{args.rounds} rounds; {runtime.backend()}, {runtime.active_blas()}",
            flush=True,
        )
        for c in args.concurrency:
            warm_up(server.url, server.model, c, bias, args.gen_tokens)
        for round_index in range(args.rounds):
            for c in args.concurrency:
                out = work / f"guidellm-c{c}-r{round_index}.json"
                spec = scenario(
                    server.url, server.model, server.model, concurrency=c, requests=args.requests, args=args,
                    bias=bias, out=out,
                )  # fmt: skip
                run = run_guidellm(exe, spec, work, args.guidellm_workers)
                results[c]["guidellm"].append(run)
                print(f"round {round_index} c={c} GuideLLM  {brief(run)} load {runtime.load_average()}", flush=True)
                if args.guidellm_only:
                    continue
                try:
                    ours = run_workbench(server.url, server.model, concurrency=c, requests=args.requests, args=args)
                except RuntimeError as exc:
                    print(f"round {round_index} c={c} workbench skipped: {exc}", flush=True)
                    args.guidellm_only = True
                    continue
                results[c]["workbench"].append(ours)
                print(f"round {round_index} c={c} workbench {brief(ours)} load {runtime.load_average()}", flush=True)
    warn_short(results, args.gen_tokens)
    if args.guidellm_only:
        figures = {
            f"c{c}_{key}": median_over_rounds(results[c]["guidellm"], key)
            for c in args.concurrency
            for key in ("ttft_s", "tpot_s", "ttft_s_per_request", "tpot_s_per_request")
        }
        for name, value in figures.items():
            print(f"GuideLLM {name:26} {value * 1000:8.2f} ms")
        runs = {c: [json.loads(brief(run)) for run in r["guidellm"]] for c, r in results.items()}
        print(json.dumps({"guidellm": figures, "runs": runs}))
        return 0
    (work / "timelines.json").write_text(json.dumps(results))
    ratios, ok = print_comparison(results, args.concurrency)
    print(f"agreement within +-{TOLERANCE:.0%}: {'yes' if ok else 'NO'}; load average {runtime.load_average()}")
    runs = {c: {tool: [json.loads(brief(run)) for run in v] for tool, v in r.items()} for c, r in results.items()}
    print(json.dumps({**ratios, "within_tolerance": ok, "runs": runs}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
