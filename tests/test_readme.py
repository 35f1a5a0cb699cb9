"""What a new user reads works as printed: the README's "Using it" Python runs; every `reasonlab`
command line in the README and in each subcommand's `--help` examples parses with the CLI's own
parser (train lines with a recipe also pass `--check`); the demo paths they name are the ones the
demo writes; `--help` shows defaults; the tiny recipes' comments name the architecture they set."""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from pathlib import Path

import pytest
import yaml

from reasonlab import demo
from reasonlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


USING_IT = section(README, "Using it")


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def command_lines(text: str) -> list[str]:
    """`reasonlab ...` lines, backslash continuations joined, trailing `# comments` dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("reasonlab "):
            lines.append(line.split("  #")[0].split(" # ")[0].strip())
    return lines


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def parses(line: str) -> argparse.Namespace:
    try:
        return build_parser().parse_args(shlex.split(line)[1:])
    except SystemExit as exit_:
        pytest.fail(f"does not parse (exit {exit_.code}): {line}")


def test_using_it_python_runs():
    (code,) = code_blocks(USING_IT, "python")
    namespace: dict = {}
    exec(compile(code, "README.md (Using it)", "exec"), namespace)
    assert namespace["verdict"].correct
    scores = namespace["scores"]
    assert scores[0] > 0 > scores[1]


README_LINES = command_lines("\n".join(code_blocks(USING_IT, "bash")))


def test_using_it_shows_every_subcommand():
    shown = {shlex.split(line)[1] for line in README_LINES}
    assert shown == set(subparsers())


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_parses(line, monkeypatch, capsys):
    args = parses(line)
    if args.command == "train" and not args.resume:
        monkeypatch.chdir(ROOT)  # the recipe path is relative to the repository
        assert main([*shlex.split(line)[1:], "--check"]) == 0, capsys.readouterr().err


HELP_LINES = [
    (name, line)
    for name, parser in subparsers().items()
    for line in command_lines(parser.epilog or "")
]


def test_help_examples_exist():
    assert {name for name, _ in HELP_LINES} >= {"eval", "search", "score", "generate"}


@pytest.mark.parametrize(
    "name, line", HELP_LINES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HELP_LINES)]
)
def test_help_example_parses(name, line):
    assert parses(line).command == name


def test_demo_models_named_in_docs_are_what_the_demo_writes():
    source = inspect.getsource(demo)
    texts = [USING_IT] + [parser.epilog or "" for parser in subparsers().values()]
    named = {m for text in texts for m in re.findall(r"--model runs/demo/(\w+)", text)}
    assert named, "no demo model named: the check would be vacuous"
    for name in named:
        assert f'out / "{name}"' in source, f"the demo writes no runs/demo/{name}"


def test_pretrain_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    options = text[text.index("options:") :]
    entries = {m[0]: m[1] for m in re.findall(r"(--[a-z-]+) (.*?)(?= --[a-z]|$)", options)}
    for option in ("--steps", "--lr", "--vocab-size", "--seq-len", "--seed", "--arch", "--size"):
        assert "(default: " in entries[option], f"{option} shows no default: {entries[option]}"
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs").glob("*_tiny.yaml")), ids=lambda p: p.stem
)
def test_tiny_recipe_comments_name_the_arch_they_set(path):
    text = path.read_text()
    arch = yaml.safe_load(text)["model"]["tiny"].get("arch", "llama")
    comments = " ".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    names = {"llama": "Llama", "qwen2": "Qwen2"}
    assert names[arch] in comments
    assert all(other not in comments for key, other in names.items() if key != arch)
