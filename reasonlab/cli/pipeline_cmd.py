"""`reasonlab pipeline RECIPE.yaml [key=value ...]`: run a pipeline's stages in order.

Thin over `reasonlab.pipeline`: each stage writes into OUT/<name>/ and marks itself done with
OUT/<name>/done.json; a rerun skips finished stages and resumes the first unfinished one.

Under torchrun every process runs the pipeline: pretrain, sft and rl stages train data parallel
(the recipe's `parallel` for pretrain stages, each stage recipe's `model.parallel` for sft and rl:
ddp or fsdp), sample and eval stages split their generation batches over the processes (the
same generations as one process), cot stages run on rank 0; rank 0 writes every done.json:

    torchrun --nproc_per_node 2 -m reasonlab pipeline configs/pipelines/r1_tiny.yaml parallel=ddp
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reasonlab.cli import CLIError, HelpFormatter

EPILOG = """\
stages: pretrain | cot | sft | sample | rl | eval; a stage's `model` and `data` name an earlier
stage (its output) or a path. The seed papers' pipelines: configs/pipelines/{r1,r1_distill,sky_t1,
demystify}.yaml and their _tiny CPU variants. Example recipe:

  out_dir: runs/rs_rl
  stages:
    - {name: base, kind: pretrain, pretrain: {steps: 600}}
    - {name: grpo, kind: rl, model: base, rl: {recipe: reasonlab/demo_countdown.yaml}}
    - {name: rs, kind: sample, model: grpo, sample: {n: 8, keep: correct, problems: 200,
       params: {num_numbers: 3, min_number: 1, max_number: 9, min_target: 10, max_target: 30}}}
    - {name: eval, kind: eval, model: grpo, eval: {benchmarks: [countdown_demo]}}
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pipeline",
        help="run a pipeline of stages (pretrain, cot, sft, sample, rl, eval) with resume",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "items",
        nargs="+",
        metavar="RECIPE.yaml | key=value",
        help="a pipeline recipe and key.sub=value overrides",
    )
    p.add_argument("--out", help="pipeline folder (sets out_dir)")
    p.add_argument(
        "--from",
        dest="start",
        metavar="STAGE",
        help="run STAGE and every later stage again from scratch (their folders are removed)",
    )
    p.add_argument("--check", action="store_true", help="load and validate the recipe, then exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.config import ConfigError, config_to_yaml
    from reasonlab.io import DataError
    from reasonlab.pipeline import Pipeline, PipelineError, load

    recipes = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if len(recipes) != 1:
        raise CLIError(f"give one pipeline recipe, got {', '.join(recipes) or 'none'}")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    try:
        config = load(recipes[0], overrides)
    except (ConfigError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    if args.check:
        print(config_to_yaml(config), end="")
        return 0
    from reasonlab.parallel import Dist

    dist = Dist.from_env()  # one process, or this rank of a torchrun group
    pipeline = Pipeline(config, base=Path(recipes[0]).resolve().parent, dist=dist)
    try:
        if args.start:
            pipeline.restart_from(args.start)
        outputs = pipeline.run()
    except (PipelineError, ConfigError, DataError, FileExistsError) as err:
        raise CLIError(str(err)) from None
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    if pipeline.stopped:  # a stage yielded too little data: said, and not an error
        print(f"pipeline stopped early in {config.out_dir}: {pipeline.stopped}")
        return 0
    last = config.stages[-1].name
    print(f"pipeline done: {len(outputs)} stages in {config.out_dir}; {last}: {outputs[last]}")
    return 0
