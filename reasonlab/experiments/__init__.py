"""`reasonlab experiment`: the seed papers' central findings re-run in miniature, with a verdict.

    from reasonlab.experiments import run_experiment
    results = run_experiment("r1_zero", "runs/experiments", seeds=3)
    results["verdict"]   # "reproduced: held-out accuracy gain (grpo - base) +17.0 +- 2.0 pts; ..."

`core` is the framework (arms x seeds through the one RL `Trainer`, resumable shared run folders,
results.json, plots, the verdict computed from per-seed effects); `catalog` declares the
experiments, each with its paper and claim. See docs/findings.md for the verdicts measured.
"""

from reasonlab.experiments.core import (
    EXPERIMENTS,
    Arm,
    Context,
    Effect,
    Experiment,
    ExperimentError,
    get,
    mean_std,
    names,
    run_experiment,
    verdict,
)

__all__ = [
    "EXPERIMENTS",
    "Arm",
    "Context",
    "Effect",
    "Experiment",
    "ExperimentError",
    "get",
    "mean_std",
    "names",
    "run_experiment",
    "verdict",
]
