"""`reasonlab experiment NAME [--seeds 3] [--out DIR] [--quick]`: a seed paper's finding in miniature.

Runs every arm x seed of the experiment (RL runs from the CPU demo's base model, resumable: a
finished run is reused, an interrupted one resumed), then writes DIR/NAME/results.json (per arm:
mean, std and per-seed values of each metric, the command), DIR/NAME/NAME.png, DIR/report.html
(every experiment in DIR) and prints the verdict computed from the numbers. `--list` names each
experiment with its paper and claim; `--all` runs every one that can run now. `--quick` checks the
mechanics on a random tiny model in a couple of steps, not the finding. `--jobs N` trains runs in N
processes side by side (file locks in DIR/locks: a process takes the runs no other holds; another
`reasonlab experiment` on the same DIR joins in the same way); each gets CPU count // N threads.

example:
  reasonlab experiment --list
  reasonlab experiment r1_zero --seeds 3 --out runs/experiments
  reasonlab experiment --all --out runs/experiments
  reasonlab experiment policy_losses --jobs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from reasonlab.cli import CLIError, HelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "experiment",
        help="re-run a seed paper's finding in miniature: arms x seeds, plot, verdict",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="an experiment (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments, papers and claims")
    p.add_argument("--all", action="store_true", help="run every experiment that can run now")
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per arm (default: the experiment's, 3)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/experiments"), help="output folder")
    p.add_argument(
        "--quick", action="store_true", help="a random tiny model, two steps: the mechanics only"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes training runs side by side (each takes the runs the others do not "
        "hold; torch threads per process: the CPU count // JOBS, at least 1)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a --jobs process
    p.set_defaults(func=run)


def start_workers(args: argparse.Namespace) -> list[tuple[subprocess.Popen, Path]]:
    """`--jobs N`: N - 1 more processes of the same command (without --jobs), logging to
    OUT/jobs/job-K.log; every process, this one too, gets OMP_NUM_THREADS = CPU count // N (or
    the lower cap already set), which caps each run's `run.num_threads` (`reasonlab.threads`)."""
    from reasonlab.threads import set_intra_op_threads, thread_cap

    cap = max(1, (os.cpu_count() or 1) // args.jobs)
    cap = min(cap, thread_cap() or cap)
    os.environ["OMP_NUM_THREADS"] = str(cap)
    # this process loaded torch before the cap was set: apply it now, for what runs outside a
    # trainer too (an experiment's searches and evaluations: on 2026-11-30 one of
    # test_time_scaling's searches took 49 min on torch's 2 threads next to 1-thread processes,
    # the same search of another seed 4-7 min in a 1-thread process beside it)
    set_intra_op_threads(None)
    argv = ["experiment", *([args.name] if args.name else ["--all"]), "--out", str(args.out)]
    argv += [*(["--seeds", str(args.seeds)] if args.seeds else []), "--worker"]
    argv += ["--quick"] if args.quick else []
    workers = []
    for k in range(1, args.jobs):
        log = args.out / "jobs" / f"job-{k}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reasonlab", *argv], stdout=f, stderr=subprocess.STDOUT
            )
        workers.append((proc, log))
    print(f"{args.jobs} processes, {cap} torch thread(s) each; the others log to {log.parent}")
    return workers


def run(args: argparse.Namespace) -> int:
    from reasonlab.experiments import ExperimentError, get, names, run_experiment
    from reasonlab.registry import UnknownNameError

    if args.list:
        for name in names():
            exp = get(name)
            status = f"  [needs {exp.needs}]" if exp.needs else ""
            print(f"{name}{status}\n  paper: {exp.paper}\n  claim: {exp.claim}")
        return 0
    if args.all == bool(args.name):
        raise CLIError("give one experiment NAME or --all (see reasonlab experiment --list)")
    if args.seeds is not None and args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    if args.all:
        todo = [n for n in names() if not get(n).needs]
        for name in names():
            if get(name).needs:
                print(f"{name}: not run, needs {get(name).needs}")
    else:
        try:
            get(args.name)
        except UnknownNameError as err:
            raise CLIError(str(err)) from None
        todo = [args.name]
    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    workers = start_workers(args) if args.jobs > 1 else []
    lines = []
    try:
        for name in todo:
            try:
                results = run_experiment(
                    name, args.out, seeds=args.seeds, quick=args.quick, train_only=args.worker
                )
            except ExperimentError as err:
                raise CLIError(str(err)) from None
            lines.append(f"{name}: {results.get('verdict', 'runs trained')}")
    finally:
        for proc, log in workers:
            if proc.wait() != 0:
                print(f"reasonlab: a --jobs process exited {proc.returncode}: see {log}")
    if args.worker:
        return 0
    if len(lines) > 1:  # each verdict was printed as it came; here all of them together
        print("\n".join(lines))
    print(f"wrote {args.out / 'report.html'}")
    return 0
