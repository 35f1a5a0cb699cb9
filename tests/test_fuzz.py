"""Adversarial completions against every registered task and reward: nothing escapes, nothing hangs.

Model output is untrusted: exponent towers, megabyte strings, 10,000-deep nesting, huge integers,
odd unicode and broken tags must give a verdict or a score, within a bound, never an exception.
Tasks that take a `timeout` get `TIMEOUT_S`; a call may take that plus the start of the worker that
replaces a killed one (`worker_start_s`, measured here, since the machine may be loaded), no more.
"""

from __future__ import annotations

import inspect
import math
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonlab import rewards, tasks
from reasonlab.records import Example, Verdict
from reasonlab.verify import bounded
from reasonlab.verify import math as mathv

TIMEOUT_S = 1.0
"""The per-check timeout given to every task that takes one."""


def _measure_worker_start() -> float:
    """Seconds to start one bounded worker and import math-verify in it: what a call pays when
    its check timed out and the worker was replaced."""
    with bounded.WorkerPool(1) as pool:
        start = time.monotonic()
        outcome = pool.call(mathv.math_verify_equal, "1", "1", timeout=60.0)
        assert outcome.ok, outcome
        return time.monotonic() - start


def within(bound_s: float, fn, *args):
    """`fn(*args)` and its wall time; a call still running after `bound_s` fails the test (it is
    left to finish in a daemon thread) instead of hanging it."""
    pool = ThreadPoolExecutor(1)
    start = time.monotonic()
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    try:
        result = future.result(timeout=bound_s)
    except FutureTimeout:
        pytest.fail(f"{getattr(fn, '__qualname__', fn)} still running after {bound_s:.1f} s")
    return result, time.monotonic() - start


WORKER_START_S = _measure_worker_start()
CALL_BOUND_S = TIMEOUT_S + 2 * WORKER_START_S + 1.0
"""Wall-clock bound for one verify call: its timeout, a replaced worker and the first start of a
worker (each measured above, on this machine under its present load), and 1 s of slack."""

DEEP = 10_000
NASTY = [
    "9**9**9**9",
    "9^{9^{9^{9}}}",
    "10^{10^{10^{10}}}!",
    "x" * 2**20,
    "{" * 2**20,
    "(" * DEEP + "1" + ")" * DEEP,
    "\\frac{" * DEEP + "1" + "}{2}" * DEEP,
    "\\sqrt{" * DEEP + "2" + "}" * DEEP,
    "9" * 100_000,
    "-" + "1" * 5_000 + ".5e99999",
    "1/0",
    "0^0",
    "\\infty - \\infty",
    "\u202e\u200b\ufeff\x00\ud800 𝟙𝟚𝟛 ٣ 五 ﬁ",
    "<answer>" * DEEP,
    "</answer>" * DEEP + "<answer>",
    "<think>" * 1000 + "</think>",
    "\\boxed{" * DEEP,
    "}" * DEEP + "\\boxed{1}",
    "(1) Mia is a knight\n" * 5_000,
    "1 + 2 * (3 - 4) / 0",
    "__import__('os').system('echo pwned')",
    "",
]
WRAPPERS = [
    "{}",
    "<think>ok</think> <answer>{}</answer>",
    "so the answer is $\\boxed{{{}}}$.",
    "<think>{}</think>",
    "The answer is {}.",
]


def instance(name: str) -> tasks.Task:
    params = inspect.signature(tasks.REGISTRY[name].__init__).parameters
    return tasks.get(name, timeout=TIMEOUT_S) if "timeout" in params else tasks.get(name)


def examples_of(task: tasks.Task, n: int = 3) -> list[Example]:
    try:
        return task.generate(n, seed=0)
    except NotImplementedError:
        return task.load(limit=n)


@pytest.fixture(scope="module", params=tasks.names())
def task_and_examples(request):
    task = instance(request.param)
    return task, examples_of(task)


def batch() -> list[str]:
    return [wrapper.format(core) for core in NASTY for wrapper in WRAPPERS[:3]] + NASTY


def test_every_task_survives_a_nasty_batch(task_and_examples):
    task, examples = task_and_examples
    texts = batch()
    exs = [examples[i % len(examples)] for i in range(len(texts))]
    verdicts, elapsed = within(CALL_BOUND_S * len(texts), task.verify_batch, texts, exs)
    assert len(verdicts) == len(texts) and all(isinstance(v, Verdict) for v in verdicts)
    # each check that timed out may cost a call's bound (its worker is replaced); the rest is fast
    timeouts = sum(v.detail == "timeout" for v in verdicts)
    assert elapsed < CALL_BOUND_S * (1 + timeouts), (elapsed, timeouts, WORKER_START_S)
    # a wrong or broken completion may be judged anything but correct
    assert not any(v.correct for v, text in zip(verdicts, texts) if text.startswith("\\frac{"))


@settings(
    max_examples=40,
    deadline=None,  # the bound below is the deadline; hypothesis's own would not scale with load
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    core=st.one_of(st.sampled_from(NASTY), st.text(max_size=300)),
    wrapper=st.sampled_from(WRAPPERS),
    repeat=st.integers(1, 3),
    pick=st.integers(0, 2),
)
def test_every_task_verifies_each_completion_within_bound(
    task_and_examples, core, wrapper, repeat, pick
):
    task, examples = task_and_examples
    text = wrapper.format(core) * repeat
    verdict, elapsed = within(CALL_BOUND_S, task.verify, text, examples[pick % len(examples)])
    assert isinstance(verdict, Verdict) and isinstance(verdict.correct, bool)


def reward_columns(texts: list[str], example: Example, task: tasks.Task) -> dict:
    prompt = task.render(example)
    return {
        "prompts": [prompt] * len(texts),
        "verdicts": [Verdict(i % 2 == 0, None, i % 3 == 0, "fuzz") for i in range(len(texts))],
        "correct": [i % 2 == 0 for i in range(len(texts))],
        "completion_ids": [list(range(min(len(t), 4096) // 4)) for t in texts],
        "num_tokens": [min(len(t), 4096) // 4 for t in texts],
        "example_id": [example.id] * len(texts),
        "example": [example] * len(texts),
    }


@pytest.mark.parametrize("name", rewards.names())
def test_every_reward_scores_a_nasty_batch(name):
    task = instance("math")
    example = examples_of(task, 1)[0]
    texts = batch()
    start = time.monotonic()
    scores = rewards.get(name)(completions=texts, **reward_columns(texts, example, task))
    assert time.monotonic() - start < CALL_BOUND_S * 3
    values = scores if isinstance(scores, list) else list(scores)
    assert len(values) == len(texts)
    assert all(isinstance(v, float) and math.isfinite(v) for v in values), values


def test_every_task_reward_scores_a_nasty_batch(task_and_examples):
    task, examples = task_and_examples
    texts = batch()
    columns = reward_columns(texts, examples[0], task)
    for scheme in ("r1", "tinyzero"):
        start = time.monotonic()
        scores = rewards.from_task(task, scheme)(completions=texts, **columns)
        assert time.monotonic() - start < CALL_BOUND_S * 3
        assert len(scores) == len(texts)
        assert all(isinstance(v, float) and math.isfinite(v) for v in scores), scores
