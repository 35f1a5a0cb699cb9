"""reasonlab.verify.tags: the final answer of a completion (last `<answer>` tag, else last box)."""

from __future__ import annotations

import pytest

from reasonlab.verify import math as mathv
from reasonlab.verify.tags import FinalAnswer, braced, final_answer, last_answer_tag, last_box


@pytest.mark.parametrize(
    "text, content",
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{1} then \\boxed{ 2 }", " 2 "),  # raw: not stripped
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$ dollars", "5"),
        ("\\boxed {3}", "3"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces do not count
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{12", None),  # not closed
        ("\\boxed", None),
        ("no box", None),
        ("\\boxed{" + "{" * 65 + "}" * 65 + "}", None),  # nested deeper than MAX_BRACE_DEPTH
    ],
)
def test_last_box(text, content):
    assert last_box(text) == content


def test_braced_limits():
    assert braced("{ab}", 0) == "ab"
    assert braced("{ab}", 0, max_chars=2) == "ab"
    assert braced("{abc}", 0, max_chars=2) is None  # closes only after 3 characters
    assert braced("{a\\}b}", 0) == "a\\}b"


def test_last_answer_tag():
    text = "<answer>1</answer> <answer>22</answer>"
    assert last_answer_tag(text) == (27, 29)
    assert last_answer_tag("<answer>1") is None
    assert last_answer_tag("</answer>") is None


def test_final_answer():
    assert final_answer("<think>x</think><answer> 3 + 4 </answer>") == FinalAnswer(
        "3 + 4", "answer tag"
    )
    # the tag wins over a later box
    assert final_answer("<answer>A</answer> \\boxed{B}").text == "A"
    assert final_answer("so \\boxed{ (1+2)*3 }") == FinalAnswer("(1+2)*3", "boxed")
    assert final_answer("\\fbox{knight}").text == "knight"
    assert final_answer("nothing") == FinalAnswer(None, detail="no <answer> tag or \\boxed{}")
    long = final_answer("<answer>" + "x" * 30 + "</answer>", max_chars=20)
    assert long.text is None and "30 characters, over the limit of 20" in long.detail
    assert final_answer("\\boxed{" + "x" * 30 + "}", max_chars=20).text is None  # not closed in 20
    assert "not text" in final_answer(None).detail  # type: ignore[arg-type]


def test_math_extractors_share_the_box_finder():
    # math's `last_boxed` is `last_box`, cleaned: `$...$` and a final period dropped
    assert mathv.last_boxed("\\boxed{$12$}") == "12"
    assert mathv.last_boxed("\\boxed{12.}") == "12"
    assert mathv.last_boxed("\\boxed{\\{1,2\\}}") == last_box("\\boxed{\\{1,2\\}}")
