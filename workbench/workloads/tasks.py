"""Built-in retrieval task: a context of facts, a question, an answer copied from the context.

It mirrors a RAG workload (long prompt, short answer) and needs no download: every item
is generated from a seed. Facts assign random values to random people, so the answer
cannot be guessed from priors; the model has to find it in the context.

    >>> item = make_items(1, seed=0)[0]
    >>> item.prompt.splitlines()[-1].startswith("A: ")
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

NAMES = (
    "Ana Ben Cara Dan Eva Finn Gia Hugo Ida Jon Kai Lena Milo Nora Omar Pia Quin Rosa Sam "
    "Tara Uma Vic Wes Xena Yara Zed Abel Bea Cole Dora Emil Faye Gus Hana Ivan Jade Kurt "
    "Lila Max Nell Otto Pam Ravi Sara Theo Ulla Vera Will Yuri Zoe"
).split()

# attribute: (fact template, question, answer stem, values). The answer stem repeats the
# fact's wording so the answer is the next word, as in cloze-style QA prompts.
ATTRIBUTES = {
    "city": (
        "{name} lives in {value}.",
        "Where does {name} live?",
        "{name} lives in",
        "Paris Rome Oslo Lima Cairo Tokyo Delhi Berlin Madrid Vienna Prague Dublin "
        "Seoul Quito Accra Hanoi Riga Bern Kiev Sofia Athens Milan Porto Lyon".split(),
    ),
    "pet": (
        "{name} owns a {value}.",
        "What pet does {name} own?",
        "{name} owns a",
        "cat dog horse rabbit parrot goat fish mouse snake turtle hamster pony "
        "frog duck lizard ferret sheep pig crab owl".split(),
    ),
    "job": (
        "{name} works as a {value}.",
        "What is the job of {name}?",
        "{name} works as a",
        "baker doctor pilot farmer lawyer teacher nurse driver singer painter "
        "chef miner tailor judge sailor writer dancer guard clerk barber".split(),
    ),
    "colour": (
        "{name} likes {value}.",
        "Which colour does {name} like?",
        "{name} likes",
        "red blue green yellow orange purple pink brown black white grey gold "
        "silver violet teal navy olive amber cyan beige".split(),
    ),
    "food": (
        "{name} eats {value}.",
        "What does {name} eat?",
        "{name} eats",
        "bread rice soup pasta cheese apples beans fish eggs salad pizza cake "
        "plums honey nuts melon grapes corn tofu figs".split(),
    ),
}

TASKS = ("facts",)


@dataclass(frozen=True)
class TaskItem:
    prompt: str
    reference: str
    context: str
    question: str


def make_context(
    rng: random.Random, num_facts: int, *, attribute: str | None = None
) -> tuple[str, list[tuple[str, str, str]]]:
    """A context passage and its (name, attribute, value) facts, each name used once.

    `attribute` gives every fact the same attribute (training only: then the answer's type
    does not tell which fact is asked about, only the name does)."""
    names = rng.sample(NAMES, num_facts)
    facts = []
    for name in names:
        chosen = attribute or rng.choice(sorted(ATTRIBUTES))
        facts.append((name, chosen, rng.choice(ATTRIBUTES[chosen][3])))
    text = " ".join(ATTRIBUTES[a][0].format(name=n, value=v) for n, a, v in facts)
    return f"Context: {text}\n", facts


def format_question(name: str, attribute: str) -> str:
    _, question, stem, _ = ATTRIBUTES[attribute]
    return f"Q: {question.format(name=name)}\nA: {stem.format(name=name)}"


def make_training_segments(
    rng: random.Random,
    *,
    min_facts: int = 2,
    max_facts: int = 8,
    questions: int = 4,
    same_attribute: float = 0.0,
) -> list[tuple[str, bool]]:
    """One training document as (text, is_answer) segments: a context, then answered questions.

    With probability `same_attribute` every fact of the context shares one attribute."""
    num_facts = rng.randint(min_facts, max_facts)
    attribute = rng.choice(sorted(ATTRIBUTES)) if same_attribute and rng.random() < same_attribute else None
    context, facts = make_context(rng, num_facts, attribute=attribute)
    segments = [(context, False)]
    for name, attribute, value in rng.sample(facts, min(questions, len(facts))):
        segments += [(format_question(name, attribute), False), (f" {value}", True), (".\n", False)]
    return segments


def make_training_text(rng: random.Random, **kwargs: Any) -> str:
    return "".join(text for text, _ in make_training_segments(rng, **kwargs))


def make_items(count: int, *, seed: int, min_facts: int = 4, max_facts: int = 8) -> list[TaskItem]:
    """Held-out evaluation items: one question per context, the answer as reference."""
    rng = random.Random(f"facts-eval-{seed}")
    items = []
    for _ in range(count):
        context, facts = make_context(rng, rng.randint(min_facts, max_facts))
        name, attribute, value = rng.choice(facts)
        question = format_question(name, attribute)
        items.append(TaskItem(prompt=context + question, reference=value, context=context, question=question))
    return items


def extract_answer(generated: str) -> str:
    """The answer part of a generation: its first line, without the closing full stop."""
    return generated.strip().split("\n", 1)[0].strip().rstrip(".").strip()
