"""`reasonlab score`: verify completions with a task and score them with rewards.

Thin over `reasonlab.tasks` (verification) and `reasonlab.rewards` (the accuracy scheme and any
extra reward terms, combined with weights).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from reasonlab.cli import CLIError, HelpFormatter
from reasonlab.io import CannotWrite, DataError, enumerate_jsonl, require, write_jsonl

VERIFY_CHUNK = 256
"""Completions verified per call (the progress bar moves by chunks)."""

EPILOG = """\
input: a JSONL file, one completion per line, as an object with
  completion   the completion text (or a list of chat messages)
  id, prompt, answer, meta
               the example it answers (the fields of Example.to_dict(), as `reasonlab
               generate` writes them; meta holds the task's fields, e.g. countdown's numbers
               and target), or all of them in an `example` sub-object
  completion_ids / num_tokens
               optional: the completion's tokens or their count (for lengths in tokens)
  Blank lines are skipped; any other field is kept.

output: the same rows, each with `verdict` (correct, answer, format_ok, detail), `reward` (the
weighted total) and `components` (every reward term by name, unweighted), written atomically.

rewards: the accuracy scheme (--scheme, component `accuracy`, weight 1) plus each --reward
  NAME[:WEIGHT][:KEY=VALUE,KEY=VALUE...]   e.g. --reward format:0.5
  --reward cosine_length:1:max_len=512,unit=chars   (values are JSON, else strings)
Prompts are rendered with --template, so the format rewards count its prefilled <think>.

example:
  reasonlab score --task countdown --input completions.jsonl --out scored.jsonl \\
      --scheme tinyzero --reward format:0.5
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="verify completions with a task and score them with rewards",
        description="Verify completions with a task, score them with rewards, write JSONL.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--task", required=True, help="task name (see `reasonlab tasks`)")
    p.add_argument("--input", required=True, type=Path, help="JSONL of completions (see below)")
    p.add_argument("--out", required=True, type=Path, help="JSONL to write")
    p.add_argument(
        "--reward",
        action="append",
        default=[],
        metavar="NAME[:WEIGHT][:K=V,...]",
        help="an extra reward term (repeatable)",
    )
    p.add_argument(
        "--scheme",
        default="r1",
        help="accuracy scheme: r1, tinyzero, logic_rl, simplerl (default: r1)",
    )
    p.add_argument(
        "--template",
        default="r1-zero",
        help="prompt template the completions were sampled with (default: r1-zero)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="verification worker processes (default: all cores)",
    )
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_reward_spec(text: str) -> dict[str, Any]:
    """`NAME[:WEIGHT][:K=V,K=V]` -> `{"name": NAME, "weight": WEIGHT, K: V, ...}`."""
    name, _, rest = text.partition(":")
    weight_text, _, params_text = rest.partition(":")
    if not name:
        raise CLIError(f"--reward {text!r}: missing the reward name (NAME[:WEIGHT][:K=V,...])")
    spec: dict[str, Any] = {"name": name}
    if weight_text:
        try:
            spec["weight"] = float(weight_text)
        except ValueError:
            raise CLIError(f"--reward {text!r}: weight {weight_text!r} is not a number") from None
        if not math.isfinite(spec["weight"]):
            raise CLIError(f"--reward {text!r}: weight must be finite")
    for item in filter(None, params_text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CLIError(f"--reward {text!r}: parameter {item!r} is not KEY=VALUE")
        try:
            spec[key] = json.loads(value)
        except json.JSONDecodeError:
            spec[key] = value
    return spec


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line; a malformed row is a CLIError at file:line."""
    try:
        rows = list(enumerate_jsonl(path, required=("completion",)))
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror}") from None
    except DataError as err:
        raise CLIError(str(err)) from None
    if not rows:
        raise CLIError(f"{path}: no rows")
    return rows


def row_example(row: dict[str, Any], where: str):
    from reasonlab.records import Example

    source, prefix = (row["example"], "example.") if "example" in row else (row, "")
    if not isinstance(source, dict):
        raise CLIError(f"{where}: field 'example' must be an object")
    try:
        require(source, ("id", "prompt", "answer"), where, prefix)
    except DataError as err:
        raise CLIError(str(err)) from None
    meta = source.get("meta") or {}
    if not isinstance(meta, dict):
        raise CLIError(f"{where}: field {prefix + 'meta'!r} must be an object")
    return Example(
        id=str(source["id"]), prompt=source["prompt"], answer=source["answer"], meta=meta
    )


def row_completion(row: dict[str, Any], where: str) -> Any:
    completion = row["completion"]
    if not isinstance(completion, (str, list)):
        raise CLIError(f"{where}: field 'completion' must be a string or a list of messages")
    return completion


def token_columns(rows: list[dict[str, Any]], path: Path, linenos: list[int]) -> dict[str, list]:
    """`completion_ids` / `num_tokens` columns when every row has the field."""
    out = {}
    for key in ("completion_ids", "num_tokens"):
        present = [key in row for row in rows]
        if all(present):
            for lineno, row in zip(linenos, rows):
                ok = (
                    isinstance(row[key], list)
                    if key == "completion_ids"
                    else (isinstance(row[key], int) and not isinstance(row[key], bool))
                )
                if not ok:
                    kind = "a list of token ids" if key == "completion_ids" else "an integer"
                    raise CLIError(f"{path}:{lineno}: field {key!r} must be {kind}")
            out[key] = [row[key] for row in rows]
    return out


# ---------------------------------------------------------------------------------------------
# Work


def verify_with_progress(task: Any, texts: list[str], examples: list, workers: int | None) -> list:
    """`reasonlab.tasks.base.verify_all` in chunks of VERIFY_CHUNK, with a progress bar."""
    from tqdm import tqdm

    from reasonlab.tasks.base import verify_all

    verdicts: list = []
    with tqdm(total=len(texts), desc="verify", unit="completion", file=sys.stderr) as bar:
        for start in range(0, len(texts), VERIFY_CHUNK):
            chunk = slice(start, start + VERIFY_CHUNK)
            verdicts.extend(verify_all(task, texts[chunk], examples[chunk], workers))
            bar.update(len(texts[chunk]))
    return verdicts


def run(args: argparse.Namespace) -> int:
    from reasonlab import rewards, tasks
    from reasonlab.registry import UnknownNameError
    from reasonlab.tasks import templates

    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.scheme not in rewards.SCHEMES:
        raise CLIError(
            f"unknown --scheme {args.scheme!r}; valid schemes: {', '.join(rewards.SCHEMES)}"
        )
    try:
        task = tasks.get(args.task)
        templates.TEMPLATES[args.template]
        specs = [parse_reward_spec(s) for s in args.reward]
        if any(spec.get("label", spec["name"]) == "accuracy" for spec in specs):
            raise CLIError("'accuracy' is the scheme's component; label the reward otherwise")
        terms = [{"name": args.scheme, "label": "accuracy"}, *specs]
        reward = rewards.Combined(terms, name="score")
    except (UnknownNameError, ValueError) as err:
        raise CLIError(str(err)) from None

    rows = read_rows(args.input)
    linenos = [lineno for lineno, _ in rows]
    rows_only = [row for _, row in rows]
    examples, completions = [], []
    for lineno, row in rows:
        where = f"{args.input}:{lineno}"
        completions.append(row_completion(row, where))
        examples.append(row_example(row, where))
    prompts = []
    for lineno, example in zip(linenos, examples):
        try:
            prompts.append(task.render(example, template=args.template))
        except KeyError as err:  # a task field the row lacks, e.g. countdown's meta.numbers
            key = err.args[0] if err.args else "?"
            field = f"meta.{key}" if key not in example.meta else str(key)
            raise CLIError(
                f"{args.input}:{lineno}: field {field!r} is missing; task {task.name!r} needs it "
                "(rows as written by `reasonlab generate`, with their meta)"
            ) from None
        except Exception as err:  # a row whose example the task cannot read
            raise CLIError(f"{args.input}:{lineno}: cannot render the prompt: {err}") from None

    texts = [rewards.completion_text(c) for c in completions]
    verdicts = verify_with_progress(task, texts, examples, args.workers)
    columns = {
        "prompts": prompts,
        "verdicts": verdicts,
        "example_id": [ex.id for ex in examples],
        **token_columns(rows_only, args.input, linenos),
    }
    try:
        out = reward.score(completions, **columns)
    except (KeyError, ValueError) as err:  # a reward missing a column, e.g. token counts
        raise CLIError(str(err)) from None

    scored = []
    for i, row in enumerate(rows_only):
        scored.append(
            {
                **row,
                "verdict": verdicts[i].to_dict(),
                "reward": out.total[i],
                "components": {k: v[i] for k, v in out.components.items()},
            }
        )
    try:
        write_jsonl(args.out, scored)
    except CannotWrite as err:
        raise CLIError(str(err)) from None

    n = len(scored)
    means = out.means()
    print(f"scored {n} completions of task {task.name!r} -> {args.out}")
    print(f"  correct    {sum(v.correct for v in verdicts) / n:.4f}  (share the task verifies)")
    print(f"  format_ok  {sum(v.format_ok for v in verdicts) / n:.4f}")
    print(f"  reward     {means['reward']:.4f}  (mean of the weighted total)")
    width = max(len(k) for k in out.components)
    for key in out.components:
        scheme = key == "accuracy" or key.startswith("accuracy/")
        what = f", the {args.scheme!r} scheme's reward" if scheme else ""
        print(f"    {key:<{width}}  {means[key]:.4f}  (weight {out.weights[key]:g}{what})")
    return 0
