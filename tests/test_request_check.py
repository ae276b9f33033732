"""What a request may not carry anywhere (pure): unpaired surrogates, non-finite numbers, and
nesting deeper than any real request."""

from __future__ import annotations

from worker.request_check import MAX_NESTING, first_problem


def nested(levels: int) -> object:
    value: object = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_a_request_nested_too_deeply_is_refused() -> None:
    # the body is level 1, "metadata" holds levels 2 and on
    at_the_limit = {"model": "m", "metadata": nested(MAX_NESTING - 1)}
    assert first_problem(at_the_limit) is None
    problem = first_problem({"model": "m", "metadata": nested(MAX_NESTING)})
    assert problem is not None
    assert problem.message == f"the request nests deeper than {MAX_NESTING} levels"
    # far deeper than Python's recursion limit: refused, no RecursionError
    assert first_problem(nested(50_000)) is not None


def test_values_that_are_not_json_are_named() -> None:
    assert first_problem({"x": [1.0, float("nan")]}) == (
        "'x[1]' must be a finite number, got nan",
        "x[1]",
    )
    surrogate = first_problem({"m": [{"content": "a\ud800b"}]})
    assert surrogate is not None and surrogate.param == "m[0].content"
