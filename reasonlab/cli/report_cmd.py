"""`reasonlab report RUN_DIR [RUN_DIR ...] --out report.html`: one self-contained HTML page.

Reads the run files only (see `reasonlab.analysis.report`) of RL, SFT, demo, eval, search,
pipeline and experiment folders: config and command, accuracy (held-out and training, the model
before training at step 0, per difficulty), loss and learning rate, reward and its components,
length and truncation, KL, entropy, clip fraction, grad norm, behaviour rates and reflection
words per step, held-out evaluation tables, eval tables (avg@n, pass@k, maj@k, per group) and
scaling curves, search tables, the largest behaviour changes, sample responses with the detected
behaviours highlighted; a pipeline folder as a section per stage. Several runs share each plot's
axes. No network, no scripts: inline SVG and CSS.

example:
  reasonlab report runs/demo --out report.html
  reasonlab report runs/a runs/b --names grpo dr_grpo --out compare.html
  reasonlab report runs/r1_tiny --out pipeline.html
  reasonlab report runs/r1_tiny/cold_start/run runs/r1_tiny/reasoning_rl/run --out sft_vs_rl.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reasonlab.cli import CLIError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="an HTML report (self-contained) of one or more run folders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")
    p.add_argument("--names", nargs="+", help="a label per run (default: folder names)")
    p.add_argument(
        "--sample-steps",
        nargs="+",
        type=int,
        metavar="STEP",
        help="steps whose logged responses are shown (default: first, middle and last)",
    )
    p.add_argument(
        "--samples-per-step", type=int, default=3, help="responses shown per step and run"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.analysis.report import write_report
    from reasonlab.io import DataError

    if args.names is not None and len(args.names) != len(args.runs):
        raise CLIError(f"--names: {len(args.names)} names for {len(args.runs)} runs")
    if args.samples_per_step < 0:
        raise CLIError(f"--samples-per-step must be >= 0, got {args.samples_per_step}")
    try:
        out = write_report(
            args.runs, args.out, args.names, args.sample_steps, args.samples_per_step
        )
    except (FileNotFoundError, DataError) as err:
        raise CLIError(str(err)) from None
    print(f"wrote {out}")
    return 0
