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
