"""What is sent: prompts, datasets, chat templates and arrival times. Pure and hashed: the same options give
the same prompts and the same `workload_hash`.

- `options`: `WorkloadOptions`, the workload fields every experiment config inherits (and `bench`'s flags);
- `prompt_sets`: synthetic length distributions, shared prefixes, the facts task, users' files -> `Workload`;
- `datasets`: JSONL/JSON/CSV/parquet/ShareGPT readers; `chat`: chat templates; `tasks`, `corpus`: the built-in
  retrieval task and the stdlib docstrings corpus; `arrivals`: the one Poisson process; `data/`: shipped sets.
"""

__all__ = ["arrivals", "chat", "corpus", "datasets", "options", "prompt_sets", "tasks"]
