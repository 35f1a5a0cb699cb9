"""`reasonlab sft RECIPE.yaml [key=value ...] [--out DIR] [--resume RUN_DIR]`: supervised fine-tuning.

The recipe fills `reasonlab.sft.config.SFTConfig`; `key.sub=value` overrides follow it (values
parsed as YAML), e.g. `training.max_steps=200 data.packing=false`; overrides alone start from the
defaults. `--resume RUN_DIR` continues a
run from its newest complete checkpoint, reading the run's own resolved `config.yaml` (a recipe and
overrides, when given, are applied on top). The run folder ends with `model/`, a standard Hugging
Face folder.

Data parallel under torchrun (`model.parallel` ddp or fsdp; each process trains on
`per_device_train_batch_size` rows of every micro-batch):

    torchrun --nproc_per_node 2 -m reasonlab sft RECIPE.yaml model.parallel=fsdp
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from reasonlab.cli import HelpFormatter, add_recipe_arguments

    parser = subparsers.add_parser(
        "sft",
        help="supervised fine-tuning (and distillation) from a recipe",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.cli import CLIError, recipe_and_overrides
    from reasonlab.config import ConfigError, config_help, config_to_yaml, load_config
    from reasonlab.io import DataError
    from reasonlab.sft.config import SFTConfig

    if args.show_config:
        print(config_help(SFTConfig))
        return 0
    source, overrides = recipe_and_overrides(
        args, "configs/sft_countdown_cpu.yaml", defaults_ok=True
    )
    try:
        config = load_config(SFTConfig, source, overrides)
    except ConfigError as err:
        raise CLIError(str(err)) from None
    if args.check:
        print(config_to_yaml(config), end="")
        return 0

    from reasonlab.parallel import Dist
    from reasonlab.sft.trainer import SFTError, SFTTrainer

    dist = Dist.from_env()  # one process, or this rank of a torchrun group
    try:
        summary = SFTTrainer(config, resume=bool(args.resume), dist=dist).train()
    except (FileExistsError, FileNotFoundError, SFTError, DataError, ValueError) as err:
        raise CLIError(str(err)) from None
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    line = f"done: {summary['steps']} steps in {summary['run_dir']}"
    if summary["final"]:
        line += f"; last loss {summary['final']['loss']:.4f}"
    for name, row in (("before", summary["before"]), ("after", summary["eval"])):
        if row and "eval/accuracy" in row:
            line += f"; held-out accuracy {name} {row['eval/accuracy']:.3f}"
    d = summary["data"]
    line += f"; rows {d['kept']} trained, {d['held_out']} held-out skipped"
    print(line)
    print(f"model: {summary['model']}")
    return 0
