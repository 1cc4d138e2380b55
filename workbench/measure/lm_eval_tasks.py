"""Standard benchmarks: lm-evaluation-harness tasks on the model under test, through mlx-lm's wrapper.

`mlx_lm.evaluate.MLXLM` is the lm-eval model class mlx-lm ships (log-likelihood of each
choice with a prompt cache, greedy `batch_generate` until a stop string); here it wraps the
model the workbench already loaded, so its dtype is the run's. Each document becomes a
`task` row like an eval-set item: `item_id` `<task>/<doc_id>`, the task's first metric and
score, `acc_norm` and `choice_logprobs` for multiple choice, the prediction for generation;
the summary carries lm-eval's own aggregates as `lm_eval.<task>.<metric>`.

lm-eval is an optional extra (it pulls torch and datasets): `pip install
'chimera-workbench[lm-eval]'`. Hub tasks (`hellaswag`, `mmlu`, ...) download their data;
`--lm-eval-include DIR` adds local YAML tasks, which may read local data files and then
run offline (HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1).

A task folder can run code: a YAML value tagged `!function utils.process_docs` imports and runs the Python
file next to it. So a folder holding any `.py` file, a `!function` tag, or an `include:` of a YAML file
outside the folder is refused (one line naming the file) unless `--allow-task-code` is given
(`check_include`), before lm-eval is imported.

    workbench eval --model default --lm-eval arc_easy,hellaswag --lm-eval-limit 200
    workbench eval --model nano --lm-eval my_task --lm-eval-include tasks/ --json
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path

from workbench.errors import DataError, UsageError
from workbench.paths import read_capped
from workbench.workloads import chat, prompt_sets

INSTALL_HINT = "pip install 'chimera-workbench[lm-eval]'"
MAX_TASK_FILE_BYTES = 1 << 20
FUNCTION_TAG = re.compile(rb"!function\b")
INCLUDE_KEY = re.compile(rb"^\s*include\s*:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)
CODE_HINT = "a task folder with code runs it; pass --allow-task-code if you trust it"


def check_include(folder: Path, *, allow_code: bool = False) -> None:
    """Refuse a task folder that would run code (a `.py` file, a `!function` tag, an `include:` outside the
    folder), unless `allow_code`; symlinks are not followed. One line names the file."""
    if allow_code:
        return
    root = folder.resolve()
    for directory, _, files in os.walk(folder, followlinks=False):
        for name in sorted(files):
            path = Path(directory) / name
            if name.endswith((".py", ".pyc", ".so")):
                raise DataError(f"lm-eval include folder {folder}: {path} is code; {CODE_HINT}")
            if not name.endswith((".yaml", ".yml")):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise DataError(f"lm-eval include folder {folder}: {path} links outside the folder; {CODE_HINT}")
            text = read_capped(path, MAX_TASK_FILE_BYTES, "lm-eval task ")
            found = FUNCTION_TAG.search(text)
            if found:
                line = text[: found.start()].count(b"\n") + 1
                raise DataError(f"lm-eval task {path}:{line} names code with !function; {CODE_HINT}")
            for match in INCLUDE_KEY.finditer(text):
                target = (path.parent / match.group(1).decode(errors="replace")).resolve()
                if not target.is_relative_to(root):
                    line = text[: match.start(1)].count(b"\n") + 1
                    raise DataError(f"lm-eval task {path}:{line} includes a file outside the folder; {CODE_HINT}")


def available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


def check_installed() -> None:
    if not available():
        raise UsageError(f"--lm-eval needs the optional lm-eval package, which is not installed: {INSTALL_HINT}")


@functools.cache
def task_manager(include: str | None, defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include, include_defaults=defaults)


def find_tasks(names: list[str], include: str | Path | None = None, *, allow_code: bool = False):
    """A task manager that knows every name; local tasks are looked up first (indexing lm-eval's own ~15,000
    tasks takes seconds). An unknown name, a missing include folder or one with code (`check_include`, unless
    `allow_code`) is one line."""
    if include is not None:
        if not Path(include).is_dir():
            raise DataError(f"lm-eval include folder {include}: no such folder")
        check_include(Path(include), allow_code=allow_code)
    check_installed()
    if not names:
        raise UsageError("--lm-eval needs at least one task name")
    if include is not None:
        include = Path(include)
        local = task_manager(str(include), False)
        if all(name in local.all_tasks for name in names):
            return local
    manager = task_manager(str(include) if include else None, True)
    missing = [name for name in names if name not in manager.all_tasks]
    if missing:
        raise UsageError(f"unknown lm-eval task {missing[0]!r}; --lm-eval-include DIR adds local YAML tasks")
    return manager


def make_lm(loaded, *, chat_mode: str = "auto", batch_size: int = 8):
    """mlx-lm's lm-eval model class on an already loaded model (not a path it would load again)."""
    from lm_eval.api.model import LM
    from mlx_lm.evaluate import MLXLM

    chat.check_chat_mode(chat_mode)
    use_template = chat_mode == "on" or (chat_mode == "auto" and chat.has_template(loaded.tokenizer))
    if use_template and not chat.has_template(loaded.tokenizer):
        raise DataError("chat 'on' needs a chat template, and the model's tokenizer has none")

    class WorkbenchLM(MLXLM):
        def __init__(self):
            LM.__init__(self)
            self._model, self.tokenizer = loaded.model, loaded.tokenizer
            self._max_tokens, self._batch_size, self._sampler = None, batch_size, None
            self.use_chat_template = use_template

    return WorkbenchLM()


def run_tasks(
    loaded,
    names: list[str],
    *,
    include=None,
    limit: int | None = None,
    chat_mode: str = "auto",
    allow_code: bool = False,
):
    """Evaluate lm-eval tasks: a list of (task, rows, workload, params), one per (sub)task, and the summary."""
    from importlib.metadata import version

    import lm_eval

    manager = find_tasks(names, include, allow_code=allow_code)
    lm = make_lm(loaded, chat_mode=chat_mode)
    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(names),
        task_manager=manager,
        limit=limit,
        log_samples=True,
        apply_chat_template=lm.use_chat_template,
        verbosity="ERROR",
    )
    parts, summary = [], {}
    for task, samples in output["samples"].items():
        rows = [sample_row(task, i, sample) for i, sample in enumerate(samples)]
        workload = prompt_sets.Workload(
            f"lm_eval:{task}",
            tuple(s.get("prompt_hash", str(s["doc_id"])) for s in samples),
            tuple(s.get("target_hash", "") for s in samples),
            params={"task": task, "limit": limit, "lm_eval": version("lm-eval")},
        )
        parts.append((task, rows, workload, {"lm_eval_task": task, "lm_eval_limit": limit}))
    for task, metrics in output["results"].items():
        for key, value in metrics.items():
            if "," in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                metric, filtered = key.split(",", 1)
                summary[f"lm_eval.{task}.{metric if filtered == 'none' else f'{metric}_{filtered}'}"] = value
    return parts, summary


def sample_row(task: str, index: int, sample: dict) -> dict:
    """One lm-eval document as a `task` row: its first metric and score, what the model chose or wrote."""
    metric = sample["metrics"][0]
    value = sample.get(metric)
    row = {
        "kind": "task",
        "request_index": index,
        "item_id": f"{task}/{sample['doc_id']}",
        "metric": metric,
        "score": float(value) if isinstance(value, (int, float)) else None,
    }
    if isinstance(sample.get("acc_norm"), (int, float)):
        row["acc_norm"] = float(sample["acc_norm"])
    responses = sample.get("filtered_resps") or []
    arguments = sample.get("arguments") or []
    if responses and isinstance(responses[0], (tuple, list)):
        scores = [float(r[0]) for r in responses]
        row["choice_logprobs"] = scores
        target = sample.get("target")
        continuations = [a[1] for a in arguments if isinstance(a, (tuple, list)) and len(a) == 2]
        if len(continuations) == len(scores):
            row["prediction"] = continuations[max(range(len(scores)), key=scores.__getitem__)]
            if isinstance(target, int) and 0 <= target < len(continuations):
                row["reference"] = continuations[target]
    elif responses and isinstance(responses[0], str):
        row["prediction"] = responses[0]
        row["reference"] = str(sample.get("target"))
    return row
