"""`mlx_lm.benchmark` and the workbench measuring the same model, lengths and trials, in one run.

mlx-lm's benchmark is run in this process through its own `main()` (its printed
"Averages" line is parsed); the workbench's `measure_generation` runs right after on the
same weights and the same prompt (mlx-lm's seed-0 random tokens), and the two are
interleaved over rounds to cancel drift.

    .venv/bin/python benchmarks/compare_mlx_lm.py [--model default] [-p 512] [-g 128] [-n 5] [--rounds 2]

Target (issue 2): prefill and decode tok/s agree within +-5%. mlx-lm's generation_tps
counts N tokens over (t_N - t_1) where ours counts N - 1 (docs/metrics.md); both the raw
ratio and the ratio on mlx-lm's definition are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys

TOLERANCE = 0.05


def run_mlx_lm(path: str, p: int, g: int, n: int) -> dict:
    from mlx_lm import benchmark

    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["mlx_lm.benchmark", "--model", path, "-p", str(p), "-g", str(g), "-n", str(n)]
    try:
        with contextlib.redirect_stdout(out):
            benchmark.main()
    finally:
        sys.argv = argv
    line = next(x for x in out.getvalue().splitlines() if x.startswith("Averages"))
    values = dict(re.findall(r"(\w+)=([\d.]+)", line))
    return {"prompt_tps": float(values["prompt_tps"]), "generation_tps": float(values["generation_tps"])}


def benchmark_prompt(vocab_size: int, p: int) -> list[int]:
    """The prompt `mlx_lm.benchmark` draws (seed 0, uniform token ids), so both sides decode the same text."""
    import mlx.core as mx

    mx.random.seed(0)
    return mx.random.randint(0, vocab_size, (1, p)).tolist()[0]


def run_workbench(loaded, p: int, g: int, n: int) -> dict:
    from workbench import stats
    from workbench.measure import timed
    from workbench.models import loader

    prompts = [benchmark_prompt(loader.vocab_size(loaded), p)]
    records = timed.measure_generation(loaded.model, loaded.tokenizer, prompts, timed.Schedule(trials=n), gen_tokens=g)
    return {key: stats.describe(getattr(r, key) for r in records)["mean"] for key in ("prefill_tps", "decode_tps")}


def main() -> int:
    from workbench import runtime

    runtime.ensure_optimised_blas()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("-p", "--prompt-tokens", type=int, default=512)
    parser.add_argument("-g", "--generation-tokens", type=int, default=128)
    parser.add_argument("-n", "--num-trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from workbench.models import loader

    loaded = loader.load(args.model)
    p, g, n = args.prompt_tokens, args.generation_tokens, args.num_trials
    theirs, ours = [], []
    for _ in range(args.rounds):  # mlx_lm.benchmark loads the model afresh each time; so do we
        theirs.append(run_mlx_lm(str(loaded.path), p, g, n))
        ours.append(run_workbench(loader.load(args.model), p, g, n))
    from workbench import stats

    mean = lambda rows, k: stats.describe(r[k] for r in rows)["mean"]
    mlx_prompt, mlx_gen = mean(theirs, "prompt_tps"), mean(theirs, "generation_tps")
    wb_prefill, wb_decode = mean(ours, "prefill_tps"), mean(ours, "decode_tps")
    prefill_ratio = wb_prefill / mlx_prompt
    decode_ratio = wb_decode / mlx_gen
    decode_ratio_same_def = wb_decode * g / (g - 1) / mlx_gen
    print(
        f"model {loaded.model_id} on {runtime.backend()} ({runtime.active_blas()}), p={p} g={g} trials={n} "
        f"rounds={args.rounds}"
    )
    print(f"{'':22}{'mlx_lm.benchmark':>18}{'workbench':>12}{'ratio':>8}")
    print(f"{'prefill tok/s':22}{mlx_prompt:18.1f}{wb_prefill:12.1f}{prefill_ratio:8.3f}")
    print(f"{'decode tok/s':22}{mlx_gen:18.1f}{wb_decode:12.1f}{decode_ratio:8.3f}")
    print(f"{'decode, N/(tN-t1)':22}{mlx_gen:18.1f}{wb_decode * g / (g - 1):12.1f}{decode_ratio_same_def:8.3f}")
    ok = all(abs(r - 1) <= TOLERANCE for r in (prefill_ratio, decode_ratio))
    print(f"agreement within +-{TOLERANCE:.0%}: {'yes' if ok else 'NO'}")
    print(
        json.dumps(
            {
                "mlx_prompt_tps": mlx_prompt,
                "mlx_generation_tps": mlx_gen,
                "prefill_tps": wb_prefill,
                "decode_tps": wb_decode,
                "prefill_ratio": prefill_ratio,
                "decode_ratio": decode_ratio,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
