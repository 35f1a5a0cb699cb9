"""`reasonlab train RECIPE.yaml [key=value ...] [--out DIR] [--resume RUN_DIR]`: an RL run.

The recipe fills `reasonlab.rl.config.TrainConfig`; `key.sub=value` overrides follow it (values
parsed as YAML). `--resume RUN_DIR` continues a run from its newest complete checkpoint, reading
the run's own resolved `config.yaml` (a recipe and overrides, when given, are applied on top, e.g.
`run.steps=200` to train longer). Under `torchrun --nproc_per_node N` the run is data-parallel.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from reasonlab.cli import HelpFormatter, add_recipe_arguments

    parser = subparsers.add_parser(
        "train",
        help="RL training (GRPO family, PPO) from a recipe",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    add_recipe_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.cli import CLIError, recipe_and_overrides
    from reasonlab.config import ConfigError, config_help, config_to_yaml, load_config
    from reasonlab.rl.config import TrainConfig, validate

    if args.show_config:
        print(config_help(TrainConfig))
        return 0
    source, overrides = recipe_and_overrides(args, "configs/tinyzero_countdown_tiny.yaml")

    from reasonlab.rl.distributed import Dist

    try:
        config = load_config(TrainConfig, source, overrides)
        dist = Dist.from_env()
        validate(config, dist.world_size, source=source, overrides=overrides)
    except ConfigError as err:
        raise CLIError(str(err)) from None
    if args.check:
        print(config_to_yaml(config), end="")
        return 0

    from reasonlab.rl.trainer import Trainer, TrainingError

    try:
        trainer = Trainer(config, resume=bool(args.resume), dist=dist)
        summary = trainer.train()
    except (FileExistsError, TrainingError, ConfigError) as err:
        raise CLIError(str(err)) from None
    finally:
        dist.close()
    if dist.is_main:
        final = summary["final"]
        line = (
            f"done: {summary['steps']} steps in {summary['run_dir']}; last step reward "
            f"{final.get('reward/mean', float('nan')):.3f}, accuracy {final.get('accuracy', 0):.3f}"
        )
        if summary["eval"]:
            line += f"; held-out accuracy {summary['eval']['accuracy']:.3f}"
        print(line)
    return 0
