"""The speculative experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""


def small(nano: str) -> dict:
    return {"draft": nano, "num_draft_tokens": [2, 3], "gen_tokens": 12}


def test_speculative_acceptance_by_position():
    from workbench.experiments.speculative import acceptance

    # prefill token, then rounds: 2 accepted + model token; 0 accepted + model token; 3 accepted + bonus
    flags = [False, True, True, False, False, True, True, True, False]
    accepted, proposed, reached, accepted_at = acceptance(flags, 3)
    assert (accepted, proposed) == (5, 9)
    assert reached == [3, 2, 2] and accepted_at == [2, 2, 1]
