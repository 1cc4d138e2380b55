"""The one arrival process: when each request of a Poisson stream is sent.

A Poisson stream at `rate_rps` has exponential gaps with mean `1 / rate_rps`. The first request goes at 0, as
GuideLLM's and vLLM's `bench serve` Poisson profiles start: a run starts when its first request is sent, so a
leading idle gap would only lengthen the window. The same seed gives the same offsets everywhere (the endpoint's
rate levels and in-process continuous batching).
"""

from __future__ import annotations

import random


def poisson_arrivals(count: int, rate_rps: float, seed: int = 0) -> list[float]:
    """Send offsets (s) of `count` requests at `rate_rps` requests/s: exponential gaps, the first request at 0."""
    rng, now, out = random.Random(f"poisson-{seed}"), 0.0, []
    for _ in range(count):
        out.append(now)
        now += rng.expovariate(rate_rps)
    return out
