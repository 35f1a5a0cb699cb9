"""The experiment framework: arms x seeds of RL runs, per-seed measurements, a verdict from numbers.

An `Experiment` declares its arms (an `Arm` is a recipe: the experiment's base recipe plus
`key=value` overrides, filled into `reasonlab.rl.config.TrainConfig`), the metrics it reports per
run, and the `effects` its claim predicts: per-seed differences that are > 0 when the claim holds.
`run_experiment` trains every arm x seed with the one `Trainer` from the experiment's base model
(`Context.train`), measures each run, and writes `results.json` (per arm: mean, standard deviation
and per-seed values of every metric, with the command that reruns the arm), a PNG plot, and the
experiment's section of `OUT/report.html` (`reasonlab.analysis.report.write_experiments_report`).

Run folders are shared and resumable: a run's folder is `OUT/runs/HASH`, HASH a hash of its
resolved config (seed included), of the base model's identity and of the measurement's settings.
A folder with `experiment.json` (the measurement, written last and atomically) is finished and
reused as it is, by this experiment or any other that needs the same run (r1_zero,
reflection_emergence and test_time_scaling share their GRPO runs); a folder without it is an
interrupted run, continued from its newest checkpoint (`Trainer(resume=True)`).

The base model is the CPU demo's (`reasonlab.models.base_model.pretrain_base` with
`reasonlab.demo.DEMO_PRETRAIN`, cached in `OUT/base` by its settings hash): one base for every
seed; a seed varies the RL run (its prompt stream and sampling: `run.seed` and `task.seed`).
`--quick` uses a random tiny model instead (`OUT/base-quick`) and a couple of steps: it checks the
mechanics, not the finding. Every arm evaluates on the same held-out problems, those of the base
recipe's `task` section (`task.held_out_fraction`, `reasonlab.tasks.split`); an arm may not
override `task.*`, and every run's `heldout.jsonl` is checked against them.

The verdict (`verdict`) is computed from the effects: "reproduced" when every effect is positive in
its mean and in every seed, else "not reproduced"; both name every effect's mean +- standard
deviation (sample, ddof=1) over the seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlab.io import atomic_write_text, read_jsonl
from reasonlab.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]

QUICK_OVERRIDES = [
    "run.steps=2",
    "run.eval_every=2",
    "run.save_every=1",
    "run.log_rollouts_per_step=2",
    "batching.prompts_per_step=2",
    "rollout.n=2",
    "rollout.max_new_tokens=16",
]
"""Overrides of every arm under `--quick` (after the arm's own): two steps of two prompts."""
QUICK_EVAL_EXAMPLES = 4
"""Held-out problems under `--quick`."""


class ExperimentError(ValueError):
    """An experiment cannot run as asked (unknown name, needs a stage not built, bad settings)."""


@dataclass
class Arm:
    """One recipe of an experiment."""

    name: str
    overrides: list[str] = field(default_factory=list)
    """`key.sub=value` overrides of the experiment's base recipe (`task.*` is not allowed)."""
    train: bool = True
    """False: the arm is the base model itself (no RL run)."""
    note: str = ""
    """What the arm is, for --list and the report."""


@dataclass
class Effect:
    """A per-seed difference the claim predicts to be > 0 (e.g. accuracy after RL - before)."""

    label: str
    values: list[float]
    """One value per seed, in the unit shown (points, tokens, ...)."""
    unit: str = ""

    @property
    def mean(self) -> float:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        return mean_std(self.values)[1]

    @property
    def holds(self) -> bool:
        """Positive in the mean and in every seed."""
        return bool(self.values) and all(v > 0 for v in self.values)

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        against = sum(v <= 0 for v in self.values)
        tail = f" [not > 0 in {against} of {len(self.values)} seeds]" if against else ""
        return f"{self.label} {self.mean:+.1f} +- {self.std:.1f}{unit}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "mean": self.mean,
            "std": self.std,
            "values": list(self.values),
            "holds": self.holds,
        }


Measure = Callable[["Context", Arm, int, "RunRecord"], dict[str, float]]
Effects = Callable[[dict[str, dict[str, list[float]]]], list[Effect]]


@dataclass
class Experiment:
    """A claim of a seed paper, tested in miniature."""

    name: str
    paper: str
    claim: str
    arms: list[Arm]
    metrics: dict[str, str]
    """Metric key -> what it is; the first is the headline (results.json's per-arm mean/std)."""
    measure: Measure | None = None
    """(context, arm, seed, the arm's run) -> {metric: value}."""
    effects: Effects | None = None
    """{arm: {metric: per-seed values}} -> the effects the claim predicts."""
    recipe: Path = REPO_ROOT / "reasonlab" / "demo_countdown.yaml"
    """The base recipe every arm overrides (default: the CPU demo's)."""
    curves: list[str] = field(default_factory=list)
    """metrics.jsonl keys plotted against the RL step, mean over seeds, one line per arm."""
    plot: Callable[[dict[str, Any], Path], None] | None = None
    """A custom plot of results.json (default: bars of each metric per arm, and `curves`)."""
    needs: str | None = None
    """A stage not built yet: the experiment is listed but refuses to run."""
    default_seeds: int = 3


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(experiment: Experiment) -> Experiment:
    return EXPERIMENTS.add(experiment.name, experiment)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value); nan, nan when empty."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def verdict(effects: Sequence[Effect], seeds: int) -> str:
    """ "reproduced: E1; E2 (N seeds)" when every effect holds (> 0 in the mean and in every
    seed), else "not reproduced: ..." with every effect's figures (those against the claim
    marked)."""
    if not effects:
        raise ValueError("a verdict needs at least one effect")
    head = "reproduced" if all(e.holds for e in effects) else "not reproduced"
    return f"{head}: {'; '.join(e.text() for e in effects)} ({seeds} seed{'s' * (seeds != 1)})"


# ----------------------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """A finished arm x seed: its folder (None for the base arm), its model folder and its
    measurement (`experiment.json`: held-out evaluations before and after, training curves)."""

    run_dir: Path | None
    model_dir: Path
    data: dict[str, Any]

    @property
    def before(self) -> dict[str, Any]:
        return self.data["before"]

    @property
    def after(self) -> dict[str, Any]:
        return self.data["after"]

    def curve(self, key: str) -> list[float]:
        """A metrics.jsonl series over the steps (empty for the base arm)."""
        return [v for v in self.data.get("curves", {}).get(key, []) if v is not None]


class Context:
    """What the runs of one invocation share: the output folder, the base model, the held-out
    problems, and the settings (quick or default). Built once per `run_experiment`."""

    def __init__(
        self,
        out: Path,
        recipe: Path,
        *,
        quick: bool = False,
        eval_samples: int | None = None,
        log: Callable[[str], None] = print,
        callbacks: Sequence[Any] = (),
    ):
        from reasonlab import tasks
        from reasonlab.config import load_config
        from reasonlab.rl.config import TrainConfig
        from reasonlab.rl.data import split_examples

        self.out = Path(out)
        self.recipe = Path(recipe)
        self.quick = quick
        self.log = log
        self.callbacks = list(callbacks)
        self.eval_samples = (0 if quick else 4) if eval_samples is None else eval_samples
        self.quick_overrides = (
            [*QUICK_OVERRIDES, f"task.eval_size={QUICK_EVAL_EXAMPLES}"] if quick else []
        )
        self.base_cfg = load_config(TrainConfig, str(self.recipe), self.quick_overrides)
        self.task = tasks.get(self.base_cfg.task.name)
        _, self.held_out = split_examples(self.task, self.base_cfg.task)
        self.held_out_keys = sorted(self.task.key(ex) for ex in self.held_out)
        self.base_dir, self.base_id = self._prepare_base()
        self._before: dict[str, Any] | None = None

    # -- the base model ---------------------------------------------------------------------

    def _prepare_base(self) -> tuple[Path, str]:
        from reasonlab import models

        cfg = self.base_cfg
        if self.quick:  # a random tiny model, saved once so that every arm loads the same
            from reasonlab.rl.trainer import build_tiny_model, build_tiny_tokenizer

            folder = self.out / "base-quick"
            if not (folder / "config.json").is_file():
                tokenizer = build_tiny_tokenizer(self.task, cfg)
                models.save(build_tiny_model(tokenizer, cfg), tokenizer, folder)
            return folder, digest({"quick": True, "tiny": _plain(cfg.model.tiny)})
        from reasonlab.demo import base_settings
        from reasonlab.models.base_model import pretrain_base

        settings = base_settings(cfg, seed=0)
        folder = self.out / "base"
        record = pretrain_base(
            settings, folder, eval_examples=0, num_threads=cfg.run.num_threads, log=self.log
        )
        return folder, record["settings_hash"]

    def before(self) -> dict[str, Any]:
        """The base model's held-out evaluation (`reasonlab.demo.evaluate_held_out`), cached in
        OUT/base_eval-HASH.json."""
        if self._before is None:
            key = digest({"base": self.base_id, "eval": self._eval_settings()})
            path = self.out / f"base_eval-{key}.json"
            if path.is_file():
                self._before = json.loads(path.read_text(encoding="utf-8"))
            else:
                from reasonlab import models
                from reasonlab.demo import evaluate_held_out

                model, tokenizer = models.load(self.base_dir)
                self._before = evaluate_held_out(
                    model, tokenizer, self.task, self.held_out, self.base_cfg, self.eval_samples, 0
                )
                atomic_write_text(path, json.dumps(self._before, indent=2) + "\n")
        return self._before

    def _eval_settings(self) -> dict[str, Any]:
        return {"samples": self.eval_samples, "held_out": digest(self.held_out_keys)}

    # -- arms -------------------------------------------------------------------------------

    def arm_overrides(self, arm: Arm, seed: int) -> list[str]:
        """Every override of the arm's run, in order: base model, the arm's, the quick settings
        (which win), the seed, and no progress bar."""
        bad = [o for o in arm.overrides if o.partition("=")[0].strip().startswith("task.")]
        if bad:
            raise ExperimentError(
                f"arm {arm.name!r}: {bad[0]!r} overrides task.*; every arm must evaluate on the "
                "base recipe's held-out problems"
            )
        return [
            f"model.path={self.base_dir}",
            *arm.overrides,
            *self.quick_overrides,
            f"run.seed={seed}",
            f"task.seed={seed}",
            "run.progress=false",
        ]

    def command(self, arm: Arm) -> str:
        """The `reasonlab train` command that reruns the arm (SEED for the seed)."""
        if not arm.train:
            return f"(no RL: the base model, {self.base_dir})"
        items = [str(_shown(self.recipe)), *self.arm_overrides(arm, 0)]
        items = [
            i.replace("run.seed=0", "run.seed=SEED").replace("task.seed=0", "task.seed=SEED")
            for i in items
        ]
        return "reasonlab train " + " ".join(shlex.quote(i) for i in items) + " --out RUN_DIR"

    def base_record(self) -> RunRecord:
        before = self.before()
        return RunRecord(None, self.base_dir, {"before": before, "after": before, "curves": {}})

    def train(self, arm: Arm, seed: int) -> RunRecord:
        """The arm's run for `seed`: reused when finished, resumed when interrupted, else
        trained; then measured once (experiment.json)."""
        if not arm.train:
            return self.base_record()
        from reasonlab.config import config_to_yaml, load_config
        from reasonlab.demo import evaluate_held_out
        from reasonlab.rl.checkpoint import latest_checkpoint
        from reasonlab.rl.config import TrainConfig
        from reasonlab.rl.trainer import Trainer

        cfg = load_config(TrainConfig, str(self.recipe), self.arm_overrides(arm, seed))
        cfg.run.out_dir = ""
        key = digest(
            {"config": config_to_yaml(cfg), "base": self.base_id, "eval": self._eval_settings()}
        )
        run_dir = self.out / "runs" / key[:12]
        cfg.run.out_dir = str(run_dir)
        done = run_dir / "experiment.json"
        if done.is_file():
            self.log(f"  {arm.name} seed {seed}: finished run reused ({run_dir})")
            data = json.loads(done.read_text(encoding="utf-8"))
            return RunRecord(run_dir, run_dir / data["model"], data)
        resume = (run_dir / "config.yaml").is_file()
        self.log(f"  {arm.name} seed {seed}: {'resuming' if resume else 'training'} {run_dir}")
        start = time.perf_counter()
        trainer = Trainer(
            cfg,
            eval_examples=self.held_out,
            resume=resume,
            callbacks=self.callbacks,
        )
        trainer.train()
        self._check_held_out(run_dir)
        model_dir = latest_checkpoint(run_dir)
        if model_dir is None:
            raise ExperimentError(f"{run_dir}: the run finished without a checkpoint")
        after = evaluate_held_out(
            trainer.model, trainer.tokenizer, self.task, self.held_out, cfg, self.eval_samples, 0
        )
        rows = list(read_jsonl(run_dir / "metrics.jsonl", drop_partial_last_line=True))
        curve_keys = sorted({k for row in rows for k in row if not k.startswith("time/")})
        data = {
            "arm": arm.name,
            "seed": seed,
            "model": str((model_dir / "model").relative_to(run_dir)),
            "before": self.before(),
            "after": after,
            "curves": {
                k: [r.get(k) if isinstance(r.get(k), int | float) else None for r in rows]
                for k in curve_keys
            },
            "seconds": time.perf_counter() - start,
            "resumed": resume,
        }
        atomic_write_text(done, json.dumps(data, indent=2) + "\n")
        return RunRecord(run_dir, run_dir / data["model"], data)

    def _check_held_out(self, run_dir: Path) -> None:
        keys = sorted(row["key"] for row in read_jsonl(run_dir / "heldout.jsonl"))
        if keys != self.held_out_keys:
            raise ExperimentError(
                f"{run_dir}/heldout.jsonl: the run evaluated other problems than the experiment's "
                f"{len(self.held_out_keys)} held-out ones"
            )


def _plain(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shown(path: Path) -> Path:
    """`path` relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return path


# ----------------------------------------------------------------------------- the experiment


def get(name: str) -> Experiment:
    """The experiment `name` (UnknownNameError lists the valid names)."""
    from reasonlab.experiments import catalog  # noqa: F401  (registers the experiments)

    return EXPERIMENTS[name]


def names() -> list[str]:
    from reasonlab.experiments import catalog  # noqa: F401

    return EXPERIMENTS.names()


def run_experiment(
    name: str,
    out: str | Path,
    *,
    seeds: int | None = None,
    quick: bool = False,
    eval_samples: int | None = None,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
    context: Context | None = None,
) -> dict[str, Any]:
    """Run experiment `name` into `out` (see the module docstring); returns results.json's
    content, also written to OUT/NAME/results.json with OUT/NAME/NAME.png and OUT/report.html."""
    exp = get(name)
    if exp.needs:
        raise ExperimentError(f"experiment {name!r} needs {exp.needs}; it cannot run yet")
    count = exp.default_seeds if seeds is None else seeds
    if count < 1:
        raise ExperimentError(f"--seeds must be >= 1, got {count}")
    out = Path(out)
    start = time.perf_counter()
    ctx = context or Context(
        out, exp.recipe, quick=quick, eval_samples=eval_samples, log=log, callbacks=callbacks
    )
    seed_list = list(range(count))
    table: dict[str, dict[str, list[float]]] = {}
    run_dirs: dict[str, list[str | None]] = {}
    log(f"{name}: {len(exp.arms)} arms x {count} seeds into {out}")
    for arm in exp.arms:
        for seed in seed_list:
            record = ctx.train(arm, seed)
            assert exp.measure is not None
            values = exp.measure(ctx, arm, seed, record)
            for key in exp.metrics:
                table.setdefault(arm.name, {}).setdefault(key, []).append(float(values[key]))
            run_dirs.setdefault(arm.name, []).append(
                None if record.run_dir is None else str(record.run_dir)
            )
    assert exp.effects is not None
    effects = exp.effects(table)
    line = verdict(effects, count)
    headline = next(iter(exp.metrics))
    arms: dict[str, Any] = {}
    for arm in exp.arms:
        stats = {
            key: dict(zip(("mean", "std"), mean_std(vals)), values=vals)
            for key, vals in table[arm.name].items()
        }
        arms[arm.name] = {
            **stats[headline],
            "metric": headline,
            "note": arm.note,
            "overrides": arm.overrides,
            "command": ctx.command(arm),
            "runs": run_dirs[arm.name],
            "metrics": stats,
        }
    results = {
        "experiment": name,
        "paper": exp.paper,
        "claim": exp.claim,
        "quick": quick,
        "seeds": seed_list,
        "metric": headline,
        "metrics": exp.metrics,
        "held_out": {
            "examples": len(ctx.held_out),
            "fraction": ctx.base_cfg.task.held_out_fraction,
            "keys_sha": digest(ctx.held_out_keys),
        },
        "base_model": {"path": str(ctx.base_dir), "id": ctx.base_id},
        "arms": arms,
        "effects": [e.to_dict() for e in effects],
        "verdict": line,
        "command": command_line(name, count, out, quick),
        "seconds": time.perf_counter() - start,
    }
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    (exp.plot or default_plot(exp))(results, folder / f"{name}.png")
    from reasonlab.analysis.report import write_experiments_report

    pending = {n: f"needs {x.needs}" for n, x in EXPERIMENTS.items() if x.needs}
    write_experiments_report(out, out / "report.html", pending)
    log(f"{name}: {line}")
    return results


def command_line(name: str, seeds: int, out: Path, quick: bool) -> str:
    quick_flag = " --quick" if quick else ""
    return f"reasonlab experiment {name} --seeds {seeds} --out {shlex.quote(str(out))}{quick_flag}"


def curve_means(results: dict[str, Any], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """Per arm: (steps, mean over seeds of metrics.jsonl's `key`) from the runs' experiment.json."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for arm, info in results["arms"].items():
        series = []
        for run in info["runs"]:
            if run is None:
                continue
            data = json.loads((Path(run) / "experiment.json").read_text(encoding="utf-8"))
            steps, values = data["curves"].get("step", []), data["curves"].get(key, [])
            series.append({s: v for s, v in zip(steps, values) if v is not None})
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        out[arm] = (
            [int(s) for s in steps],
            [sum(s[t] for s in series) / len(series) for t in steps],
        )
    return out


def plot_title(results: dict[str, Any]) -> str:
    """ "NAME: reproduced (3 seeds; the figures: results.json)": a verdict line is too long."""
    head = results["verdict"].partition(":")[0]
    seeds = len(results["seeds"])
    return (
        f"{results['experiment']}: {head} ({seeds} seed{'s' * (seeds != 1)}; figures: results.json)"
    )


def default_plot(exp: Experiment) -> Callable[[dict[str, Any], Path], None]:
    """Bars (mean +- std, seeds as dots) of each metric per arm, then `exp.curves` per step."""

    def plot(results: dict[str, Any], path: Path) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        metrics = list(results["metrics"])
        panels = len(metrics) + len(exp.curves)
        cols = min(4, panels)
        rows = math.ceil(panels / cols)
        fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=100)
        FigureCanvasAgg(fig)
        arms = list(results["arms"])
        for i, key in enumerate(metrics):
            ax = fig.add_subplot(rows, cols, i + 1)
            stats = [results["arms"][a]["metrics"][key] for a in arms]
            xs = range(len(arms))
            ax.bar(
                xs,
                [s["mean"] for s in stats],
                yerr=[s["std"] for s in stats],
                capsize=3,
                color="#9ecae1",
            )
            for x, s in zip(xs, stats):
                ax.plot([x] * len(s["values"]), s["values"], "k.", markersize=4)
            ax.set_xticks(list(xs), arms, rotation=30 if len(arms) > 3 else 0, fontsize=7)
            ax.set_title(results["metrics"][key], fontsize=8)
            ax.grid(alpha=0.3, axis="y")
        for j, key in enumerate(exp.curves):
            ax = fig.add_subplot(rows, cols, len(metrics) + j + 1)
            for arm, (steps, values) in curve_means(results, key).items():
                ax.plot(steps, values, label=arm)
            ax.set_title(f"{key} (training, mean over seeds)", fontsize=8)
            ax.set_xlabel("RL step")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
        fig.suptitle(plot_title(results), fontsize=9)
        fig.tight_layout()
        fig.savefig(path)

    return plot
