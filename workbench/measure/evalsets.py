"""Eval sets from files: a user's quality bar as JSONL, scored the way every built-in task is.

One JSON object per line (blank lines are skipped):

- generation: `{"prompt" | "messages", "reference", "max_tokens"?, "stop"?, "metric"?}`, answered
  greedily up to `max_tokens` (default 64), EOS or the first `stop` string (nothing else is cut),
  then scored by its metric: `exact_match` (equal after stripping surrounding whitespace),
  `token_f1`, `contains` or `regex` (the reference is a pattern `regex.search` must find within 0.5 s,
  else the item scores 0 and its row says why). The metric
  is the item's own, else the set's (`--metric`, default `exact_match`).
- multiple choice: `{"prompt" | "messages", "choices", "answer"}`, scored as lm-evaluation-harness
  scores MMLU: the log-likelihood of each choice given the prompt; acc = the most likely choice is
  `answer` (an index), acc_norm = the same after dividing by each choice's length in characters.
  Write a choice as it continues the prompt (`" Paris"` after `"... lives in"`).

`id` is optional (default: the line number). `messages` are rendered with the model's chat
template (`workbench.workloads.chat`). A file that cannot be used (missing, not UTF-8, a bad JSON line,
an item without prompt or reference, an answer out of range, an unknown metric, an invalid
regex, no items) is a one-line `DataError` naming the file and line, before anything runs.
The built-in facts task ships as `workbench/workloads/data/facts_heldout.jsonl` and is scored here too.

    workbench eval --model default --eval-set my_items.jsonl --metric contains --json
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

from workbench.errors import ConfigError, DataError
from workbench.measure import quality
from workbench.workloads import chat, datasets, prompt_sets

if TYPE_CHECKING:
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    from workbench.models.loader import LoadedModel

DATA_DIR = Path(__file__).resolve().parents[1] / "workloads" / "data"
FACTS_PATH = DATA_DIR / "facts_heldout.jsonl"
FACTS_COUNT = 500
FACTS_MAX_TOKENS = 6
FACTS_STOP = (".", "\n")
DEFAULT_MAX_TOKENS = 64
MAX_TOKENS_LIMIT = 8192
KEYS = ("id", "prompt", "messages", "reference", "choices", "answer", "max_tokens", "stop", "metric")
METRICS = tuple(quality.GENERATION_METRICS)


@dataclass(frozen=True)
class EvalItem:
    item_id: str
    prompt: str | None
    messages: tuple[dict[str, str], ...] | None
    reference: str | None = None
    choices: tuple[str, ...] | None = None
    answer: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: tuple[str, ...] = ()
    metric: str = "exact_match"

    @property
    def is_choice(self) -> bool:
        return self.choices is not None

    def source(self) -> dict[str, Any]:
        """What `chat.render` takes: the prompt, or the messages."""
        return {"prompt": self.prompt} if self.prompt is not None else {"messages": list(self.messages or ())}


@dataclass(frozen=True)
class EvalSet:
    name: str
    sha256: str
    items: tuple[EvalItem, ...]

    def workload(self) -> prompt_sets.Workload:
        """The items as a hashed workload: the hash covers the file's content and the items taken."""
        return prompt_sets.Workload(
            f"eval_set:{self.name}",
            tuple(i.prompt if i.prompt is not None else json.dumps(i.messages) for i in self.items),
            tuple(i.choices[i.answer] if i.choices and i.answer is not None else i.reference for i in self.items),
            params={"eval_set": self.name, "sha256": self.sha256, "items": len(self.items)},
        )


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def read_eval_set(path: str | Path, *, metric: str = "exact_match", limit: int | None = None) -> EvalSet:
    """Every item of a JSONL eval set, checked (first `limit` items when given); problems are one-line `DataError`s."""
    check_metric(metric)
    path = Path(path)
    if not path.exists():
        raise DataError(f"eval set {path}: no such file")
    if path.is_dir():
        raise DataError(f"eval set {path} is a directory, not a file")
    items: list[EvalItem] = []
    seen: set[str] = set()
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for number, line in bounded_lines(handle, path):
                digest.update(line)
                if not line.strip() or (limit is not None and len(items) == limit):
                    continue  # past `limit`, lines are only hashed: the hash is the whole file's
                where = f"eval set {path}:{number}"
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"eval set {path} is not UTF-8 text (line {number}, byte {exc.start})") from None
                raw = datasets.loads(text, where, invalid="not valid JSON")
                item = parse_item(raw, where, default_id=str(number), metric=metric)
                if item.item_id in seen:
                    raise DataError(f"{where}: id {item.item_id!r} appears twice")
                seen.add(item.item_id)
                items.append(item)
    except OSError as exc:
        raise DataError(f"eval set {path} cannot be read ({exc.strerror})") from None
    if not items:
        raise DataError(f"eval set {path} has no items")
    return EvalSet(path.stem, digest.hexdigest()[:16], tuple(items))


def bounded_lines(handle: BinaryIO, path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of a file read line by line; a line over `datasets.MAX_LINE_BYTES` is a `DataError`
    before the rest of it is read (no eval item is 16 MiB long)."""
    for number in itertools.count(1):
        line = handle.readline(datasets.MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > datasets.MAX_LINE_BYTES and not line.endswith(b"\n"):
            raise DataError(f"eval set {path}:{number}: a line longer than {datasets.MAX_LINE_BYTES >> 20} MiB")
        yield number, line


def check_fits(
    eval_set: EvalSet, tokenizer: TokenizerWrapper | None, context_tokens: int | None, chat_mode: str = "auto"
) -> None:
    """Before anything runs: every item's prompt plus its `max_tokens` (or longest choice) fits the model's
    context. Characters alone refuse a prompt that cannot fit (`datasets.check_prompt_size`) before tokenizing;
    with a local tokenizer and a known context each item is rendered and counted. One line names the item."""
    for item in eval_set.items:
        where = f"eval set {eval_set.name}: item {item.item_id!r}"
        source = item.source()
        datasets.check_prompt_size(source, where, context_tokens)
        if tokenizer is None or not context_tokens:
            continue
        prompt, _ = chat.render(tokenizer, **source, chat=chat_mode)
        if item.choices is not None:
            more, what = max(len(tokenizer.encode(c)) for c in item.choices), "tokens of its longest choice"
        else:
            more, what = item.max_tokens, "max_tokens"
        if len(prompt) + more > context_tokens:
            raise DataError(
                f"{where}: {len(prompt)} prompt tokens + {more} {what} exceed the model's context of {context_tokens}"
            )


def parse_item(raw: Any, where: str, *, default_id: str, metric: str) -> EvalItem:
    """One checked item; `where` (file:line) starts every error."""

    def fail(problem: str) -> NoReturn:
        raise DataError(f"{where}: {problem}")

    if not isinstance(raw, dict):
        fail(f"expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        fail(f"unknown key {unknown[0]!r}; an item has {', '.join(KEYS)}")
    if ("prompt" in raw) == ("messages" in raw):
        fail("an item needs exactly one of 'prompt' and 'messages'")
    prompt, messages = raw.get("prompt"), raw.get("messages")
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        fail("'prompt' must be a non-empty string")
    if messages is not None:
        messages = check_messages(messages, fail)
    item_id = raw.get("id", default_id)
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
        fail("'id' must be a string or an integer")
    common: dict[str, Any] = {"item_id": str(item_id), "prompt": prompt, "messages": messages}
    if "choices" in raw:
        return parse_choice(raw, common, fail)
    if "reference" not in raw:
        fail("an item needs 'reference' (generation) or 'choices' and 'answer' (multiple choice)")
    if "answer" in raw:
        fail("'answer' belongs to a multiple-choice item, which needs 'choices'")
    reference = raw["reference"]
    if not isinstance(reference, str):
        fail("'reference' must be a string")
    item_metric = raw.get("metric", metric)
    if item_metric not in METRICS:
        fail(f"unknown metric {item_metric!r}; choose one of {', '.join(METRICS)}")
    if item_metric == "regex":
        import regex

        try:
            regex.compile(reference)
        except (regex.error, RecursionError, OverflowError) as exc:
            fail(f"reference {reference[:80]!r} is not a valid regular expression ({exc})")
    max_tokens = raw.get("max_tokens", DEFAULT_MAX_TOKENS)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        fail(f"'max_tokens' must be an integer in [1, {MAX_TOKENS_LIMIT}], got {max_tokens!r}")
    stop = raw.get("stop", [])
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        fail("'stop' must be a non-empty string or a list of them")
    return EvalItem(**common, reference=reference, max_tokens=max_tokens, stop=tuple(stop), metric=item_metric)


def check_messages(messages: Any, fail: Callable[[str], NoReturn]) -> tuple[dict[str, str], ...]:
    ok = isinstance(messages, list) and bool(messages)
    ok = ok and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    if not ok or not all(isinstance(m.get("content"), str) for m in messages):
        fail('\'messages\' must be a non-empty list of {"role": ..., "content": ...} objects with string values')
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)


def parse_choice(raw: dict[str, Any], common: dict[str, Any], fail: Callable[[str], NoReturn]) -> EvalItem:
    for key in ("reference", "metric", "max_tokens", "stop"):
        if key in raw:
            fail(f"'{key}' belongs to a generation item; a multiple-choice item is scored by acc and acc_norm")
    choices = raw["choices"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        fail("'choices' must be a list of at least two non-empty strings")
    if "answer" not in raw:
        fail("a multiple-choice item needs 'answer', the index of the correct choice")
    answer = raw["answer"]
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        fail(f"'answer' must be an index into the {len(choices)} choices (0 to {len(choices) - 1}), got {answer!r}")
    return EvalItem(**common, choices=tuple(choices), answer=answer)


def score_items(loaded: LoadedModel, eval_set: EvalSet, *, chat_mode: str = "auto", **kv: Any) -> list[dict[str, Any]]:
    """One row per item (kind "task"): its metric and score, the prediction against the reference; generation
    items also carry exact_match and token_f1, multiple-choice items choice_logprobs and acc_norm."""
    rows = []
    for index, item in enumerate(eval_set.items):
        prompt, _ = chat.render(loaded.tokenizer, **item.source(), chat=chat_mode)
        row: dict[str, Any] = {
            "kind": "task",
            "request_index": index,
            "item_id": item.item_id,
            "prompt_tokens": len(prompt),
        }
        if item.is_choice:
            row.update(score_choice(loaded, item, prompt, chat_mode, **kv))
        else:
            if item.reference is None:  # parse_item gives every generation item one
                raise ValueError(f"item {item.item_id!r} has neither choices nor a reference")
            text, count = quality.generate_until(
                loaded.model, loaded.tokenizer, prompt, item.max_tokens, item.stop, **kv
            )
            try:
                score = quality.GENERATION_METRICS[item.metric](text, item.reference)
            except quality.ScoreTimeout as exc:  # a catastrophic pattern: this item scores 0, the run goes on
                score, row["error"] = 0.0, f"scored 0: {exc}"
            row.update(
                metric=item.metric,
                score=score,
                prediction=text,
                reference=item.reference,
                generated_tokens=count,
                exact_match=quality.score_exact(text, item.reference),
                token_f1=quality.token_f1(text, item.reference),
            )
        rows.append(row)
    return rows


def score_choice(loaded: LoadedModel, item: EvalItem, prompt: list[int], chat_mode: str, **kv: Any) -> dict[str, Any]:
    """acc and acc_norm of one multiple-choice item from the log-likelihood of each choice."""
    if item.choices is None or item.answer is None:
        raise ValueError(f"item {item.item_id!r} is not a multiple-choice item")
    tokenizer = loaded.tokenizer
    if item.prompt is not None and chat_mode != "on":
        pairs = [encode_pair(tokenizer, item.prompt, choice) for choice in item.choices]
        context = pairs[0][0]
        continuations = [cont for _, cont in pairs]
    else:
        context = prompt
        continuations = [list(tokenizer.encode(choice, add_special_tokens=False)) for choice in item.choices]
    if not all(continuations):
        raise DataError(f"item {item.item_id!r}: a choice encodes to no tokens after the prompt")
    scores = quality.choice_logprobs(loaded.model, context, continuations, **kv)
    best = max(range(len(scores)), key=scores.__getitem__)
    normed = [s / len(c) for s, c in zip(scores, item.choices)]
    best_norm = max(range(len(normed)), key=normed.__getitem__)
    return {
        "metric": "acc",
        "score": float(best == item.answer),
        "acc_norm": float(best_norm == item.answer),
        "choice_logprobs": scores,
        "prediction": item.choices[best],
        "reference": item.choices[item.answer],
    }


def encode_pair(tokenizer: TokenizerWrapper, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation tokens as lm-evaluation-harness splits them: trailing spaces of the context move to
    the continuation, the pair is encoded whole and the continuation is what follows the context's tokens."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = list(tokenizer.encode(context + continuation))
    head = list(tokenizer.encode(context))
    return head, whole[len(head) :]


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per-metric means (`eval_<metric>`), acc_norm for multiple choice, and the item count."""
    out: dict[str, float] = {"eval_items": len(rows)}
    for metric in dict.fromkeys(r["metric"] for r in rows):
        scores = [r["score"] for r in rows if r["metric"] == metric]
        out[f"eval_{metric}"] = sum(scores) / len(scores)
    norms = [r["acc_norm"] for r in rows if r.get("acc_norm") is not None]
    if norms:
        out["eval_acc_norm"] = sum(norms) / len(norms)
    return out


def facts_lines(count: int = FACTS_COUNT) -> list[str]:
    """The facts task's held-out items (`tasks.make_items(count, seed=0)`, the items `--task facts` scored) as
    JSONL lines: greedy answers of at most 6 tokens, cut at the first full stop or newline."""
    from workbench.workloads import tasks

    return [
        json.dumps(
            {
                "id": f"facts-{i}",
                "prompt": item.prompt,
                "reference": item.reference,
                "max_tokens": FACTS_MAX_TOKENS,
                "stop": list(FACTS_STOP),
            }
        )
        for i, item in enumerate(tasks.make_items(count, seed=0))
    ]


def write_facts(path: Path = FACTS_PATH) -> Path:
    """Regenerate `workbench/workloads/data/facts_heldout.jsonl`
    (`python -c "from workbench.measure import evalsets as e; e.write_facts()"`);
    a test checks the shipped file equals this."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(facts_lines()) + "\n", encoding="utf-8")
    return path


def read_facts(count: int) -> EvalSet:
    """The first `count` items of the built-in facts set; more than it holds is a `ConfigError`."""
    if count > FACTS_COUNT:
        raise ConfigError(f"the built-in facts eval set has {FACTS_COUNT} items; {count} were asked for")
    return read_eval_set(FACTS_PATH, limit=count)
