"""The batching experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""


def small(nano: str) -> dict:
    return {"batch_sizes": [1, 4], "requests": 4, "continuous_requests": 6, "arrival_rate_rps": 50.0}


def test_continuous_scheduler_serves_urgent_first_under_a_backlog(nano):
    from workbench.optimise import continuous_batching

    prompts = [list(range(1, 17))] * 8
    requests = [continuous_batching.Request(i, p, 0.0, priority=0 if i >= 6 else 1) for i, p in enumerate(prompts)]
    rows, facts = continuous_batching.run_continuous(
        nano.model,
        nano.tokenizer,
        requests,
        continuous_batching.Scheduler(gen_tokens=4, initial_batch=2, max_batch=2, adaptive=False),
    )
    ttft = {r["request_index"]: r["ttft_s"] for r in rows}
    assert max(ttft[6], ttft[7]) < min(ttft[i] for i in range(2, 6))
    assert all(r["generated_tokens"] == 4 for r in rows)
    assert facts["max_active"] <= 2


def test_adaptive_batch_halves_on_memory_pressure_and_grows_without(nano):
    from workbench.optimise import continuous_batching

    requests = [continuous_batching.Request(i, list(range(1, 9)), 0.0) for i in range(12)]
    _, grown = continuous_batching.run_continuous(
        nano.model,
        nano.tokenizer,
        requests,
        continuous_batching.Scheduler(gen_tokens=12, initial_batch=2, max_batch=8, grow_every_steps=2),
    )
    assert grown["final_batch_limit"] > 2
    _, squeezed = continuous_batching.run_continuous(
        nano.model,
        nano.tokenizer,
        requests,
        continuous_batching.Scheduler(gen_tokens=12, initial_batch=4, max_batch=8, memory_limit_bytes=1),
    )
    assert squeezed["final_batch_limit"] == 1
