"""Plots of a run's records (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

from reasonlab.analysis.behaviours import REFLECTION_WORDS, reflection_per_step
from reasonlab.analysis.runs import Run, load_run


def training_series(run_dir: str | Path | Run) -> dict[str, tuple[list, list]]:
    """The accuracy lines of `plot_training`, by legend label: training responses (metrics.jsonl)
    and held-out (eval.jsonl, every row, step 0 included)."""
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    out = {
        f"train responses ({run.train_decoding})": (
            [r["step"] for r in run.metrics],
            [r["accuracy"] for r in run.metrics],
        )
    }
    if run.evals:
        out[f"held-out ({run.eval_decoding})"] = (
            [r["step"] for r in run.evals],
            [r["accuracy"] for r in run.evals],
        )
    return out


def plot_training(run_dir: str | Path, out: str | Path) -> Path:
    """One row of four panels against the RL step: accuracy (training responses, sampled, from
    metrics.jsonl; held-out, greedy unless `run.eval_temperature` says otherwise, from eval.jsonl,
    step 0 included when the run evaluated before training), mean reward, mean response length,
    and each R1 reflection word per sampled completion (rollouts.jsonl). The title names the run's
    task and reward scheme (config.yaml)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = load_run(run_dir)
    rows = run.metrics
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for label, (xs, ys) in training_series(run).items():
        axes[0].plot(xs, ys, "o-" if label.startswith("held-out") else "-", label=label)
    axes[0].set_title("accuracy")
    axes[0].set_ylabel("share of responses correct")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [r["reward/mean"] for r in rows])
    axes[1].set_title("mean reward (train responses)")
    axes[1].set_ylabel(f"reward ({run.reward_scheme or 'see config'})")
    axes[2].plot(steps, [r["length/mean"] for r in rows])
    axes[2].set_title("mean response length")
    axes[2].set_ylabel("tokens")
    rollouts = Path(run_dir) / "rollouts.jsonl"
    if rollouts.is_file():
        per_step = reflection_per_step(rollouts)
        xs = sorted(per_step)
        for word in REFLECTION_WORDS:
            ys = [per_step[s][word] for s in xs]
            if any(ys):
                axes[3].plot(xs, ys, label=f'"{word}"')
        if axes[3].get_legend_handles_labels()[0]:
            axes[3].legend(fontsize=7)
    axes[3].set_title("R1 reflection words, each (sampled responses)")
    axes[3].set_ylabel("occurrences per response")
    for ax in axes:
        ax.set_xlabel("RL step")
    fig.suptitle(
        f"{run.task or 'task ?'}, reward scheme {run.reward_scheme or '?'}: {run.path}", fontsize=10
    )
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
