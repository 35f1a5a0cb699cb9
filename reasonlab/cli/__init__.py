"""The `reasonlab` command: one subcommand per stage, each a thin module over the library.

Each module in COMMANDS defines `add_parser(subparsers)` (which sets `func` on its parser) and keeps
its imports inside the function it runs, so `reasonlab --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "tasks_cmd",
    "generate",
    "score",
    "pretrain",
    "train",
    "sft",
    "demo",
    "eval_cmd",
    "sample_cmd",
    "cot_cmd",
    "pipeline_cmd",
    "search_cmd",
    "analyze_cmd",
    "report_cmd",
    "experiment_cmd",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks and shows each option's default (argparse's
    ArgumentDefaultsHelpFormatter, less the `(default: None)` / `False` of options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or not action.option_strings
            or default is None
            or default is False  # a flag (0 == False: compare by identity)
            or default == []
            or default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)".lstrip()


class CLIError(Exception):
    """A user-facing error: printed as `reasonlab: error: ...` with exit status 2, no traceback."""


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a recipe-driven stage (`train`, `sft`): RECIPE.yaml and key=value items,
    --out, --resume RUN_DIR, --show-config, --check."""
    parser.add_argument(
        "items",
        nargs="*",
        metavar="RECIPE.yaml | key=value",
        help="a recipe from configs/ and key.sub=value overrides (before the --options)",
    )
    parser.add_argument("--out", help="run folder (sets run.out_dir)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print every config field with its default and meaning, then exit",
    )
    parser.add_argument(
        "--check", action="store_true", help="load and validate the config, print it, and exit"
    )


def recipe_and_overrides(
    args: argparse.Namespace, example: str, defaults_ok: bool = False
) -> tuple[str | None, list[str]]:
    """(the recipe file, the overrides) of `add_recipe_arguments`' arguments: --resume reads the
    run's own config.yaml (a recipe given too is applied on top) and --out sets run.out_dir.
    Without a recipe or --resume: an error naming `example`, unless `defaults_ok` and overrides
    were given (the config's defaults then)."""
    from pathlib import Path

    recipes = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if len(recipes) > 1:
        raise CLIError(f"one recipe at a time, got {', '.join(recipes)}")
    source = recipes[0] if recipes else None
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise CLIError(f"{run_dir} is not a run folder (no config.yaml)")
        source = source or str(run_dir / "config.yaml")
        overrides.append(f"run.out_dir={run_dir}")
    elif source is None and not (defaults_ok and overrides):
        more = ", overrides" if defaults_ok else ""
        raise CLIError(f"give a recipe (e.g. {example}){more} or --resume")
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    return source, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reasonlab", description="Build reasoning language models the DeepSeek-R1 way."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"reasonlab.cli.{name}")
        except ModuleNotFoundError as err:  # a stage not built yet must not break the others
            if err.name == f"reasonlab.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"reasonlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reasonlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
