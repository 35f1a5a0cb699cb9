"""Plots of a run's records (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

from reasonlab.analysis.behaviours import REFLECTION_WORDS, reflection_per_step
from reasonlab.io import read_jsonl


def plot_training(run_dir: str | Path, out: str | Path) -> Path:
    """Training reward, accuracy and mean response length against the step, the held-out
    accuracy where it was measured, and the reflection words per completion (R1 paper)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = list(read_jsonl(run_dir / "metrics.jsonl", ("step",), drop_partial_last_line=True))
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    axes[0].plot(steps, [r["accuracy"] for r in rows], label="train (sampled)")
    evals = [r for r in rows if "eval/accuracy" in r]
    if evals:
        axes[0].plot(
            [r["step"] for r in evals], [r["eval/accuracy"] for r in evals], "o-", label="held-out"
        )
    axes[0].set_title("accuracy")
    axes[0].legend()
    axes[1].plot(steps, [r["reward/mean"] for r in rows])
    axes[1].set_title("mean reward")
    axes[2].plot(steps, [r["length/mean"] for r in rows])
    axes[2].set_title("mean response length (tokens)")
    rollouts = run_dir / "rollouts.jsonl"
    if rollouts.is_file():
        per_step = reflection_per_step(rollouts)
        xs = sorted(per_step)
        for word in REFLECTION_WORDS:
            ys = [per_step[s][word] for s in xs]
            if any(ys):
                axes[3].plot(xs, ys, label=word)
        axes[3].plot(xs, [per_step[s]["total"] for s in xs], "k-", lw=2, label="total")
        axes[3].legend(fontsize=7)
    axes[3].set_title("reflection words per completion")
    for ax in axes:
        ax.set_xlabel("RL step")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
