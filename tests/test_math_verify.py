"""reasonlab.verify.math: answer extraction (hand cases) and bounded math-verify equivalence."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonlab import tasks
from reasonlab.verify import math as mathv

# --- extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so $x = \\boxed{5}$.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1}, then \\boxed{2}", "2"),
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$ dollars", "5"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces do not count
        ("\\boxed {  3 }", "3"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{$12$}", "12"),
        ("\\boxed{12", None),  # truncated
        ("\\boxed{}", None),
        ("no box", None),
        ("\\boxed{" + "{" * 65 + "}" * 65 + "}", None),  # nested deeper than MAX_BRACE_DEPTH
        ("\\boxed{1}" + "x" * 10_000, None),  # outside the tail that is read
        ("\\boxed{" + "9" * 600 + "}", None),  # longer than MAX_ANSWER_CHARS
    ],
)
def test_last_boxed(text, answer):
    assert mathv.last_boxed(text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("so $x = \\boxed{5}$.", "5"),
        ("\\boxed{30^\\circ.}$", "30^\\circ"),  # a final period is dropped (math-verify keeps it)
        ("\\boxed{ 4 }", "4"),
        ("\\boxed{3} and \\boxed {4}", "4"),  # the last box after the first `\boxed{`
        ("\\boxed{1} so $\\boxed 2$.", "1"),  # a box after the text's last `}` is not seen
        ("\\boxed {5}", None),  # math-verify needs a literal `\boxed{` somewhere
        ("$\\boxed 5$", None),
        ("\\fbox{7}", None),
        ("\\boxed{12", None),
        ("\\boxed{" + "9" * 600 + "}", None),
    ],
)
def test_boxed_answer_finds_the_box_math_verify_reads(text, answer):
    assert mathv.boxed_answer(text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("<think>hm</think> <answer> 42 </answer>", "42"),
        ("<answer>$\\frac{1}{2}$</answer>", "\\frac{1}{2}"),
        ("<answer>so \\boxed{3}.</answer>", "3"),
        ("<answer>\\boxed{}</answer>", None),
        ("<answer>1</answer> wait <answer>2</answer>", "2"),
        ("<answer>7", None),
        ("</answer> 3 <answer>", None),
    ],
)
def test_answer_tag(text, answer):
    assert mathv.answer_tag(text) == answer


@pytest.mark.parametrize(
    "text, answer",
    [
        ("So the answer is 42.", "42"),
        ("The final answer is $\\boxed{5}$. I hope it is correct.", "5"),
        ("Final answer: x = 3\nDone", "x = 3"),
        ("the answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("The answer is 3.5 cm", "3.5 cm"),
        ("the answer to part (a) comes later", None),
        ("The answer is $\\boxed{}$.", None),
    ],
)
def test_answer_is(text, answer):
    assert mathv.answer_is(text) == answer


def test_numbers():
    assert mathv.last_number("She pays $1,234.50 in total.") == "1234.50"
    assert mathv.last_number("from 3 down to -12") == "-12"
    assert mathv.last_number("none here") is None
    assert mathv.gsm8k_marker("24 + 48 = 72\n#### 72") == "72"
    assert mathv.gsm8k_marker("#### $1,000") == "1000"
    assert mathv.gsm8k_marker("#### what") is None


def test_extract_tries_extractors_in_order():
    text = "The answer is 4. <answer>5</answer> \\boxed{6}"
    assert mathv.extract(text) == ("5", "answer_tag")
    assert mathv.extract(text, ["boxed", "answer_tag"]) == ("6", "boxed")
    assert mathv.extract("The answer is 4.") == ("4", "answer_is")
    assert mathv.extract("I get 17 apples") == (None, None)
    assert mathv.extract("I get 17 apples", mathv.GSM8K_EXTRACTORS) == ("17", "last_number")
    assert mathv.extract(None) == (None, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid: answer_tag, boxed"):
        mathv.extract("x", ["boxes"])


def test_gold_answers():
    assert mathv.gold_from_solution("so $\\boxed{\\frac{3}{4}}$.") == "\\frac{3}{4}"
    assert mathv.gold_from_gsm8k("5 + 3 = 8\n#### 2,125") == "2125"
    assert mathv.gold_from_gsm8k("no marker") is None
    assert mathv.gold_from_value(27.0) == "27"
    assert mathv.gold_from_value(2.5) == "2.5"
    assert mathv.gold_from_value("025") == "25"
    assert mathv.gold_from_value(" \\frac{1}{2} ") == "\\frac{1}{2}"


# --- equivalence (math-verify in a bounded worker) --------------------------------------------

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("0.5", "\\dfrac{1}{2}"),
    ("\\frac{1}{2}", "1/2"),
    ("-\\frac{5}{9}", "-5/9"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("(1,2]", "(1, 2]"),
    ("(-\\infty, 3)", "(-\\infty,3)"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("30^\\circ", "30"),
    ("10\\%", "10"),
    ("3", "x = 3"),
    ("x^2+2x+1", "(x+1)^2"),
    ("25", "025"),
    ("1000", "1,000"),
    ("27", "27.0"),
]
DIFFERENT = [
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("(1,2]", "[1,2]"),
    ("(3,4)", "(4,3)"),
    ("5", "-5"),
    ("\\pi", "3.14159"),
]


def test_equivalence_hand_cases():
    pairs = EQUIVALENT + DIFFERENT
    got = mathv.check_many(pairs)
    assert [c.equal for c in got] == [True] * len(EQUIVALENT) + [False] * len(DIFFERENT)
    assert got[0] == mathv.Equivalence(True, "ok")
    assert got[-1] == mathv.Equivalence(False, "wrong answer")


def test_gold_goes_first():
    # math-verify reads a relation in the gold as the set it describes, not the other way round
    assert mathv.check("1<x<2", "(1,2)").equal
    assert not mathv.check("(1,2)", "1<x<2").equal


def test_unparsable_answers_are_reported():
    assert mathv.check("\\frac{1}{2}", "\\frac{").detail in ("answer not parsable", "wrong answer")
    assert mathv.check("", "1").detail == "gold not parsable"


def test_check_many_matches_check_one_by_one():
    pairs = [("\\frac{1}{2}", "0.5"), ("7", "7"), ("7", "8"), ("\\frac{1}{2}", "0.5"), ("7", "x=7")]
    assert mathv.check_many(pairs) == [mathv.check(g, p) for g, p in pairs]


def test_timeout_returns_quickly():
    start = time.monotonic()
    got = mathv.check("5", "9^{9^{9^{9}}}", timeout=1.0)
    assert got == mathv.Equivalence(False, "timeout")
    assert time.monotonic() - start < 15


def math_verify_reference(gold: str, pred: str) -> bool:
    """math-verify itself, with the extraction settings of open-r1's and TRL's `accuracy_reward`
    and the default normalization, with no shortcut of ours."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)
    gold_parsed = parse(mathv.boxed(gold), parsing_timeout=None)
    pred_parsed = parse(
        mathv.boxed(pred),
        extraction_config=[config],
        extraction_mode="first_match",
        parsing_timeout=None,
    )
    return (
        bool(gold_parsed)
        and bool(pred_parsed)
        and verify(gold_parsed, pred_parsed, timeout_seconds=None)
    )


def test_reference_is_what_check_says():
    pairs = EQUIVALENT + DIFFERENT
    assert [math_verify_reference(g, p) for g, p in pairs] == [
        c.equal for c in mathv.check_many(pairs)
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.integers(-(10**12) + 1, 10**12 - 1),
    b=st.integers(-(10**12) + 1, 10**12 - 1),
    same=st.booleans(),
)
def test_integer_fast_path_agrees_with_math_verify(a, b, same):
    gold, pred = str(a), str(a if same else b)
    fast = mathv.fast_verdict(gold, pred)
    assert fast is not None
    assert fast.equal == math_verify_reference(gold, pred)


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("25", "025"),  # leading zero
        ("5", "+5"),
        ("0", "-0"),
        ("10", "10\\%"),  # percentages have their own rule
        ("5", "5.0"),  # a Float: rounding to 6 places
        ("1000", "1,000"),
        ("5", " 5"),
        ("1" * 13, "1" * 13),  # longer than the fast path takes
    ],
)
def test_integer_fast_path_leaves_other_forms_to_math_verify(gold, pred):
    assert mathv.fast_verdict(gold, pred) is None


def _forms(answer: str) -> list[str]:
    return [
        answer,
        f" {answer} ",
        answer.replace("\\frac", "\\dfrac"),
        answer.replace("(", "\\left(").replace(")", "\\right)"),
        answer.replace(" ", ""),
        f"{answer}.",
        f"x = {answer}",
    ]


def test_same_normalized_string_is_math_verifys_verdict():
    """Wherever the string shortcut fires, math-verify (parsing) says equal too."""
    golds = sorted({e.answer for e in tasks.get("math").load("math500")})
    golds = random.Random(0).sample(golds, 80) + ["0.5", "\\frac12", "\\text{(A)}", "1/0"]
    fired = 0
    for gold in golds:
        for pred in dict.fromkeys(_forms(gold)):
            if mathv.same_normalized_string(gold, pred):
                fired += 1
                assert math_verify_reference(gold, pred), (gold, pred)
    assert fired >= 100  # the shortcut is exercised, not vacuous
    assert not mathv.same_normalized_string("answer", "answer")  # an anchor word: other patterns
    assert not mathv.same_normalized_string("\\boxed{1}", "\\boxed{1}")  # a second box
    assert not mathv.same_normalized_string("1", "2")


def _latex_parses(strings: list[str]) -> list[str]:
    from latex2sympy2_extended import latex2sympy
    from sympy import srepr

    out = []
    for latex in strings:
        try:
            out.append(srepr(latex2sympy(latex, normalization_config=None)))
        except Exception as exc:
            out.append(f"error {type(exc).__name__}")
    return out


def test_fast_latex_parsing_gives_the_same_parse():
    from latex2sympy2_extended import NormalizationConfig, normalize_latex

    golds = sorted({e.answer for e in tasks.get("math").load("math500")})
    config = NormalizationConfig(
        basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="last"
    )
    strings = [normalize_latex(mathv.boxed(g), config) for g in random.Random(1).sample(golds, 120)]
    strings += [
        "6x^2+4x-5",  # needs the LL stage (SLL reports a syntax error)
        "\\frac{t^2}{2}",
        "x = 4x^2 -2x + \\frac{3}{2}",
        "\\frac{",  # a syntax error in both modes
        "x = = 2",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        # number literals: digits, leading zeros, decimals, commas, long ones, percentages
        "0",
        "007",
        "2.50",
        "007.5",
        "-0.125",
        "1,000",
        "0,5",
        "12345678901234567890123",
        "3.14159265358979323846264338327950288",
        "5\\%",
        "2.5\\%",
        "1e5",
        "10^{-3}",
    ]
    before = _latex_parses(strings)
    try:
        assert mathv.use_fast_latex_parsing()
        assert mathv.use_fast_latex_parsing()  # idempotent
        fast = _latex_parses(strings)
    finally:
        assert not mathv.use_fast_latex_parsing(enable=False)
    assert fast == before
    assert _latex_parses(strings) == before  # undone
    assert sum(p.startswith("error") for p in before) >= 2


def test_settled_verdicts_are_kept_across_calls():
    pair = ("\\frac{7}{3}", "7/3")
    mathv.VERDICT_CACHE.clear()
    assert mathv.check_many([pair]) == [mathv.Equivalence(True, "ok")]
    assert mathv.VERDICT_CACHE.get(pair) == mathv.Equivalence(True, "ok")
    assert mathv.check("5", "9^{9^{9^{9}}}", timeout=1.0).detail == "timeout"
    assert mathv.VERDICT_CACHE.get(("5", "9^{9^{9^{9}}}")) is None  # depends on the machine
    small = mathv._VerdictCache(2)
    for i in range(3):
        small.put((str(i), "x"), mathv.Equivalence(False, "wrong answer"))
    assert small.get(("0", "x")) is None and small.get(("2", "x")) is not None


def test_solve_cache_gives_the_same_verdicts_and_solves_each_equation_once(monkeypatch):
    import sympy
    from math_verify import grader

    pairs = [
        ("\\cos x = x", "\\cos x = x + 1"),  # sympy gives up on the gold: NotImplementedError
        ("\\cos x = x", "y = \\cos x = x"),
        ("x^2 = 4", "x = 2"),
        ("x^2 = 4", "x^2 - 4 = 0"),
        ("y = 2x + 1", "2x - y = -1"),
        ("y = 2x + 1", "y - 1 = 2x"),
    ]
    assert grader.solve is sympy.solve
    plain = [mathv.math_verify_equal(g, p) for g, p in pairs]
    assert any(v.equal for v in plain) and not all(v.equal for v in plain)

    calls: list[str] = []

    def counted_solve(f, *symbols, **flags):
        calls.append(sympy.srepr(f))
        return sympy.solve(f, *symbols, **flags)

    cached = mathv._CachedSolve(counted_solve, size=16)
    monkeypatch.setattr(grader, "solve", cached)
    assert [mathv.math_verify_equal(g, p) for g, p in pairs] == plain
    assert calls and len(calls) == len(set(calls))  # each equation solved once, the gold's too
    gold = mathv._parse_gold("\\cos x = x")[0]
    for _ in range(2):  # the exception is kept and raised again, without solving again
        with pytest.raises(NotImplementedError, match="No algorithms"):
            cached(gold, gold.free_symbols)
    solved = cached(sympy.Eq(sympy.Symbol("x") ** 2, 4), {sympy.Symbol("x")})
    solved.clear()  # a caller changing what it got does not change what is kept
    assert cached(sympy.Eq(sympy.Symbol("x") ** 2, 4), {sympy.Symbol("x")}) != []
    count = len(calls)
    with pytest.raises(NotImplementedError):
        cached(gold, gold.free_symbols, rational=False)  # flags: not cached
    assert len(calls) == count + 1


def test_use_solve_cache_is_idempotent_and_undone():
    import sympy
    from math_verify import grader

    try:
        assert mathv.use_solve_cache()
        assert mathv.use_solve_cache()
        assert isinstance(grader.solve, mathv._CachedSolve)
        assert grader.solve.solve is sympy.solve
    finally:
        assert not mathv.use_solve_cache(enable=False)
    assert grader.solve is sympy.solve


def test_relations_are_sent_first_then_by_gold():
    pairs = [("5", "x"), ("\\frac{1}{2}", "1"), ("y = 2x", "y = x"), ("1 \\le x", "a"), ("5", "b")]
    assert sorted(pairs, key=mathv._schedule_key) == [
        ("1 \\le x", "a"),
        ("y = 2x", "y = x"),
        ("5", "b"),
        ("5", "x"),
        ("\\frac{1}{2}", "1"),
    ]
