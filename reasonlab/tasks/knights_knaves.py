"""Knights and Knaves: who always tells the truth and who always lies (Logic-RL).

The puzzles of Xie et al. (2024, "On Memorization of Large Language Models in Logical Reasoning")
that Logic-RL (Xie et al., 2025, github.com/Unakar/Logic-RL) trains on. Each inhabitant makes one
statement; a knight's statement is true and a knave's is false; the puzzle has exactly one
consistent assignment. Statements are kept in the Logic-RL form (a Python literal):

    ('telling-truth', i) | ('lying', i) | ('not', S) | ('and', S, S, ...) | ('or', S, S, ...)
    | ('->', S, S) | ('<=>', S, S)            # i: 0-based index of the person spoken about

`load()` reads the Logic-RL test parquet files shipped in reasonlab/data/knights_knaves (3 to 7
people, 100 puzzles each). `generate()` makes new puzzles as Logic-RL's data has them (depth 2,
width 2): each statement is, uniformly, a claim "X is a knight/knave", its negation, or an and /
or / if-then / if-and-only-if of two claims; a draw is kept only when brute force over the 2^n
assignments finds exactly one solution. (Depth 1 alone never gives one: claims alone are parity
constraints k_i xor k_j = c, which flipping everyone's role preserves.)

Verification follows Logic-RL's reward (`parse_model_answer`): in the final answer (last
`<answer>`, else last `\\boxed{}`; see verify.tags) every name must appear as "NAME is a
knight|knave" (case-insensitive; the first such claim counts), and the words "knight" and "knave"
together must occur exactly once per person, so hedges like "Zoey is a knight or a knave" fail.
Correct when every role matches.
"""

from __future__ import annotations

import ast
import math
import random
import re
import zlib
from collections.abc import Sequence
from itertools import permutations, product
from pathlib import Path
from typing import Any

from reasonlab.records import Example, Verdict
from reasonlab.tasks import register
from reasonlab.tasks.base import Param, Task
from reasonlab.verify.tags import final_answer

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "knights_knaves"
SPLIT_PEOPLE = {f"{n}ppl": n for n in range(3, 8)}
MIN_PEOPLE, MAX_PEOPLE = 2, 8
NAMES = (
    "Abigail Aiden Alexander Amelia Aria Aurora Ava Avery Benjamin Charlotte Chloe Daniel David "
    "Elizabeth Ella Emily Emma Ethan Evelyn Grace Harper Henry Isabella Jack Jackson Jacob James "
    "Joseph Liam Lily Logan Lucas Luke Mason Matthew Mia Michael Noah Oliver Olivia Owen Penelope "
    "Riley Samuel Scarlett Sebastian Sofia Sophia Victoria William Zoey"
).split()
"""First names the generator draws from (those of the Logic-RL data)."""

Statement = tuple  # the Logic-RL form above
_LEAVES = ("telling-truth", "lying")
_ARITY = {"not": (1, 1), "and": (2, None), "or": (2, None), "->": (2, 2), "<=>": (2, 2)}
_MAX_NESTING = 8  # for statements read from files


# --- logic --------------------------------------------------------------------------------------


def is_true(statement: Statement, knights: Sequence[bool]) -> bool:
    """The truth of `statement` when person i is a knight exactly when knights[i]."""
    op = statement[0]
    if op == "telling-truth":
        return knights[statement[1]]
    if op == "lying":
        return not knights[statement[1]]
    if op == "not":
        return not is_true(statement[1], knights)
    if op == "and":
        return all(is_true(s, knights) for s in statement[1:])
    if op == "or":
        return any(is_true(s, knights) for s in statement[1:])
    if op == "->":
        return not is_true(statement[1], knights) or is_true(statement[2], knights)
    return is_true(statement[1], knights) == is_true(statement[2], knights)  # "<=>"


def solutions(statements: Sequence[Statement]) -> list[tuple[bool, ...]]:
    """Every assignment (True = knight) in which each person's statement is true iff a knight."""
    return [
        knights
        for knights in product((True, False), repeat=len(statements))
        if all(is_true(s, knights) == k for s, k in zip(statements, knights))
    ]


def parse_statements(text: str, num_people: int) -> tuple[Statement, ...]:
    """Logic-RL's statements string, checked: one well-formed statement per person."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise ValueError(f"statements are not a Python literal: {err}") from None
    if not isinstance(value, tuple) or len(value) != num_people:
        raise ValueError(f"expected a tuple of {num_people} statements, got {text[:80]!r}")
    for s in value:
        _check_statement(s, num_people, 1)
    return value


def _check_statement(s: Any, num_people: int, depth: int) -> None:
    if depth > _MAX_NESTING or not isinstance(s, tuple) or not s:
        raise ValueError(f"malformed statement {s!r}")
    op, args = s[0], s[1:]
    if op in _LEAVES:
        if len(args) != 1 or type(args[0]) is not int or not 0 <= args[0] < num_people:
            raise ValueError(f"statement {s!r} must name one of {num_people} people by index")
        return
    if op not in _ARITY:
        raise ValueError(
            f"unknown operator {op!r} in {s!r}; valid: {', '.join([*_LEAVES, *_ARITY])}"
        )
    lo, hi = _ARITY[op]
    if len(args) < lo or (hi is not None and len(args) > hi):
        raise ValueError(f"operator {op!r} takes {lo}{'' if hi == lo else '+'} arguments in {s!r}")
    for a in args:
        _check_statement(a, num_people, depth + 1)


def random_statement(rng: random.Random, num_people: int) -> Statement:
    """One statement of nesting depth at most 2, drawn as the module says (the two claims of a
    binary operator differ)."""

    def leaf() -> Statement:
        return (rng.choice(_LEAVES), rng.randrange(num_people))

    kind = rng.choice(("leaf", "not", "and", "or", "->", "<=>"))
    if kind == "leaf":
        return leaf()
    if kind == "not":
        return ("not", leaf())
    first, second = leaf(), leaf()
    while second == first:  # "A or A" says nothing new
        second = leaf()
    return (kind, first, second)


# --- language -----------------------------------------------------------------------------------

_QUOTED = (
    '{name} said, "{s}".',
    '{name} was heard saying, "{s}".',
    '"{s}," {name} claimed.',
    '"{s}," {name} declared.',
    'In a statement by {name}: "{s}".',
    'According to {name}, "{s}".',
    '{name} stated, "{s}".',
    '{name} remarked, "{s}".',
    'As {name} put it, "{s}".',
    '"{s}" - {name}.',
    'In {name}\'s words: "{s}".',
    '{name} asserted: "{s}".',
)
_REPORTED = ("{name} said that {s}.", "{name} told you that {s}.", "{name} expressed that {s}.")


_COMMUTATIVE = ("and", "or", "<=>")
_MAX_RELABELINGS = 5040
"""Relabelings tried by `canonical_statements` before it falls back to colour classes alone."""


def _relabel(s: Statement, where: Sequence[int]) -> Statement:
    """`s` with person i renamed where[i]; arguments of commutative operators sorted."""
    op, args = s[0], s[1:]
    if op in _LEAVES:
        return (op, where[args[0]])
    parts = [_relabel(a, where) for a in args]
    if op in _COMMUTATIVE:
        parts.sort(key=repr)
    return (op, *parts)


def _colours(statements: Sequence[Statement], rounds: int = 3) -> list[str]:
    """A colour per person that no renaming or reordering of the people changes: the shape of
    their statement, refined by the colours of the people it speaks about (Weisfeiler-Lehman)."""
    n = len(statements)
    colour = [""] * n
    for _ in range(rounds):
        colour = [repr(_relabel_colour(s, p, colour)) for p, s in enumerate(statements)]
    return colour


def _relabel_colour(s: Statement, speaker: int, colour: Sequence[str]) -> Statement:
    op, args = s[0], s[1:]
    if op in _LEAVES:
        return (op, "self" if args[0] == speaker else colour[args[0]])
    parts = [_relabel_colour(a, speaker, colour) for a in args]
    if op in _COMMUTATIVE:
        parts.sort(key=repr)
    return (op, *parts)


def canonical_statements(statements: Sequence[Statement]) -> str:
    """One string for a puzzle and every renaming and reordering of its people.

    People are ordered by a colour that does not depend on their order (`_colours`); the lowest
    `repr` over every order within equal colours is the canonical form. When that is more than
    `_MAX_RELABELINGS` orders, the sorted colours alone are the key: every relabeling still gets
    the same key, and two different puzzles share one only if refinement cannot tell them apart.
    """
    n = len(statements)
    colour = _colours(statements)
    classes: dict[str, list[int]] = {}
    for p in sorted(range(n), key=lambda p: colour[p]):
        classes.setdefault(colour[p], []).append(p)
    count = 1
    for members in classes.values():
        count *= math.factorial(len(members))
    if count > _MAX_RELABELINGS:
        return "wl:" + repr(sorted(colour))
    best = None
    for orders in product(*(permutations(m) for m in classes.values())):
        order = [p for block in orders for p in block]  # new position -> old person
        where = [0] * n
        for new, old in enumerate(order):
            where[old] = new
        text = repr(tuple(_relabel(statements[old], where) for old in order))
        if best is None or text < best:
            best = text
    return str(best)


def render_statement(s: Statement, names: Sequence[str]) -> str:
    """English for a statement: "Zoey is a knight", "if A then B", "A if and only if B"..."""
    op = s[0]
    if op in _LEAVES:
        return f"{names[s[1]]} is a {'knight' if op == 'telling-truth' else 'knave'}"
    if op == "not":
        inner = s[1]
        if inner[0] in _LEAVES:
            return (
                f"{names[inner[1]]} is not a {'knight' if inner[0] == 'telling-truth' else 'knave'}"
            )
        return f"it is not true that {_part(inner, names)}"
    if op in ("and", "or"):
        return f" {op} ".join(_part(a, names) for a in s[1:])
    if op == "->":
        return f"if {_part(s[1], names)} then {_part(s[2], names)}"
    return f"{_part(s[1], names)} if and only if {_part(s[2], names)}"


def _part(s: Statement, names: Sequence[str]) -> str:
    text = render_statement(s, names)
    return text if s[0] in _LEAVES or s[0] == "not" else f"({text})"


def render_quiz(names: Sequence[str], statements: Sequence[Statement], rng: random.Random) -> str:
    """The puzzle in Logic-RL's words, with a randomly chosen way of reporting each statement."""
    n = len(names)
    listed = names[0] if n == 1 else ", ".join(names[:-1]) + f", and {names[-1]}"
    lines = [
        "A very special island is inhabited only by knights and knaves. Knights always tell the "
        f"truth, and knaves always lie. You meet {n} inhabitants: {listed}."
    ]
    for name, s in zip(names, statements):
        text = render_statement(s, names)
        if rng.random() < len(_REPORTED) / (len(_REPORTED) + len(_QUOTED)):
            lines.append(rng.choice(_REPORTED).format(name=name, s=text))
        else:
            lines.append(rng.choice(_QUOTED).format(name=name, s=text[0].upper() + text[1:]))
    lines.append("So who is a knight and who is a knave?")
    return " ".join(lines)


def solution_text(names: Sequence[str], knights: Sequence[bool]) -> str:
    """Logic-RL's `solution_text_format`: "(1) Zoey is a knight\\n(2) Oliver is a knave"."""
    return "\n".join(
        f"({i}) {name} is a {'knight' if k else 'knave'}"
        for i, (name, k) in enumerate(zip(names, knights), 1)
    )


_SOLUTION_LINE = re.compile(r"\(\d+\)\s*(.+?)\s+is\s+a\s+(knight|knave)\s*$", re.IGNORECASE)


def _gold(example: Example) -> tuple[list[str], list[bool]]:
    """(names, solution) from meta, else parsed from a `solution_text_format` answer."""
    meta = example.meta
    if "names" in meta and "solution" in meta:
        return list(meta["names"]), [bool(k) for k in meta["solution"]]
    names, knights = [], []
    for line in str(example.answer).splitlines():
        if m := _SOLUTION_LINE.match(line.strip()):
            names.append(m.group(1))
            knights.append(m.group(2).lower() == "knight")
    if not names:
        raise ValueError(
            f"example {example.id}: no names/solution in meta and answer is not "
            "'(1) NAME is a knight ...' lines"
        )
    return names, knights


def _role_pattern(name: str) -> re.Pattern[str]:
    # lookarounds, not \b, so a name that starts or ends with a non-word character still matches
    return re.compile(rf"(?<!\w){re.escape(name)}(?!\w)\s+is\s+a\s+(knight|knave)(?!\w)", re.I)


# --- the task -----------------------------------------------------------------------------------


@register
class KnightsKnaves(Task):
    name = "knights_knaves"
    difficulty_key = "names"
    description = (
        "Knights and Knaves logic puzzles (Logic-RL): say who is a knight and who is a knave; "
        "generated (2-8 people) or the shipped Logic-RL test sets"
    )
    answer_example = "(1) Zoey is a knight\n(2) ..."
    ability = "logic"
    bounded_by_construction = True  # linear regexes over a capped answer
    params = (Param("num_people", 3, f"inhabitants per puzzle ({MIN_PEOPLE}-{MAX_PEOPLE})"),)
    splits = (*SPLIT_PEOPLE, "test")

    def generate(self, n: int, seed: int = 0, **params: Any) -> list[Example]:
        """`n` puzzles with exactly one solution and distinct statements; seedable."""
        p = self.resolve_params(params)
        num_people = p["num_people"]
        if type(num_people) is not int or not MIN_PEOPLE <= num_people <= MAX_PEOPLE:
            raise ValueError(
                f"num_people must be an integer in {MIN_PEOPLE}..{MAX_PEOPLE}, got {num_people!r}"
            )
        rng = random.Random(seed)
        examples: list[Example] = []
        seen: set[tuple[Statement, ...]] = set()
        max_draws = 10_000 + 1_000 * n
        for _ in range(max_draws):
            if len(examples) >= n:
                break
            statements = tuple(random_statement(rng, num_people) for _ in range(num_people))
            if statements in seen:
                continue
            seen.add(statements)
            found = solutions(statements)
            if len(found) != 1:
                continue
            names = rng.sample(NAMES, num_people)
            meta = {
                "names": names,
                "solution": list(found[0]),
                "statements": repr(statements),
                "num_people": num_people,
            }
            quiz = render_quiz(names, statements, rng)
            examples.append(
                Example(
                    f"knights_knaves-{seed}-{len(examples)}",
                    quiz,
                    solution_text(names, found[0]),
                    meta,
                )
            )
        if len(examples) < n:
            raise ValueError(
                f"knights_knaves made only {len(examples)} of {n} distinct puzzles in {max_draws} "
                f"draws with num_people={num_people}; ask for fewer"
            )
        return examples

    def load(self, path_or_split: str | None = None, limit: int | None = None) -> list[Example]:
        """A shipped split ('3ppl'..'7ppl', or 'test' for all five) or a Logic-RL .parquet path."""
        choice = "test" if path_or_split is None else str(path_or_split)
        if choice == "test":
            files = [DATA_DIR / f"{s}_test.parquet" for s in SPLIT_PEOPLE]
        elif choice in SPLIT_PEOPLE:
            files = [DATA_DIR / f"{choice}_test.parquet"]
        elif choice.endswith(".parquet") and Path(choice).is_file():
            files = [Path(choice)]
        else:
            raise ValueError(
                f"unknown knights_knaves split or file {choice!r}; splits: "
                f"{', '.join(self.splits)}, or a path to a Logic-RL .parquet file"
            )
        examples = [ex for f in files for ex in _read_parquet(f)]
        return examples if limit is None else examples[:limit]

    def question(self, example: Example) -> str:
        if isinstance(example.prompt, str) and example.prompt:
            return example.prompt
        names = example.meta["names"]
        statements = parse_statements(example.meta["statements"], len(names))
        return render_quiz(names, statements, random.Random(zlib.crc32(example.id.encode())))

    def key(self, example: Example) -> str:
        """The puzzle up to names, the order of the people and the order of the arguments of
        and / or / <=> (`canonical_statements`); puzzles without parsed statements fall back to
        their normalised text."""
        meta = example.meta
        if "statements" not in meta or "names" not in meta:
            return super().key(example)
        statements = parse_statements(meta["statements"], len(meta["names"]))
        return "kk:" + canonical_statements(statements)

    def ground_truth(self, example: Example) -> dict[str, Any]:
        """Logic-RL's `{"solution_text_format", "statements"}`, as its kk reward reads them."""
        return {"solution_text_format": example.answer, "statements": example.meta["statements"]}

    def verify(self, text: str, example: Example) -> Verdict:
        """Logic-RL's check (see the module docstring). `answer` is the roles found, written as
        `solution_text_format` in the puzzle's order; `detail` names the first wrong person."""
        found = final_answer(text)
        if found.text is None:
            return Verdict(False, None, False, found.detail)
        names, gold = _gold(example)
        content = found.text
        lowered = content.lower()
        mentions = lowered.count("knight") + lowered.count("knave")
        if mentions != len(names):
            return Verdict(
                False, None, False, f"{mentions} knight/knave mentions for {len(names)} people"
            )
        said = []
        for name in names:
            match = _role_pattern(name).search(content)
            if match is None:
                return Verdict(False, None, False, f"no 'NAME is a knight/knave' for {name}")
            said.append(match.group(1).lower() == "knight")
        answer = solution_text(names, said)
        for name, s, g in zip(names, said, gold):
            if s != g:
                role = {True: "knight", False: "knave"}
                return Verdict(False, answer, True, f"{name} is a {role[g]}, not a {role[s]}")
        return Verdict(True, answer, True, "ok")


def _read_parquet(path: Path) -> list[Example]:
    import pyarrow.parquet as pq

    need = ["quiz", "names", "solution", "solution_text_format", "statements"]
    optional = ["cot_head", "cot_repeat_steps", "cot_foot"]
    have = set(pq.read_schema(path).names)
    missing = [c for c in need if c not in have]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)}; a Logic-RL knights-and-knaves "
            f"file has {', '.join(need)}; found {', '.join(sorted(have))}"
        )
    rows = pq.read_table(path, columns=need + [c for c in optional if c in have]).to_pylist()
    examples = []
    for i, row in enumerate(rows):
        names, solution = list(row["names"]), [bool(k) for k in row["solution"]]
        if len(names) != len(solution):
            raise ValueError(f"{path}: row {i}: {len(names)} names but {len(solution)} roles")
        try:
            parse_statements(row["statements"], len(names))
        except ValueError as err:
            raise ValueError(f"{path}: row {i}: column statements: {err}") from None
        meta: dict[str, Any] = {
            "names": names,
            "solution": solution,
            "statements": row["statements"],
            "num_people": len(names),
        }
        if row.get("cot_repeat_steps"):  # Logic-RL's reference reasoning, for SFT corpora
            steps = [row.get("cot_head"), *row["cot_repeat_steps"], row.get("cot_foot")]
            meta["cot"] = [step for step in steps if step]
        examples.append(
            Example(
                f"knights_knaves-{path.stem}-{i}", row["quiz"], row["solution_text_format"], meta
            )
        )
    return examples
