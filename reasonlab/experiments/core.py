"""The experiment framework: arms x seeds of RL runs, per-seed measurements, a verdict from numbers.

An `Experiment` declares its arms (an `Arm` is a recipe: the experiment's base recipe plus
`key=value` overrides, filled into `reasonlab.rl.config.TrainConfig`), the metrics it reports per
run, and the `effects` its claim predicts: per-seed differences that are > 0 when the claim holds.
`run_experiment` trains every arm x seed with the one `Trainer` from the experiment's base model
(`Context.train`), measures each run, and writes `results.json` (per arm: mean, standard deviation
and per-seed values of every metric, with the command that reruns the arm), a PNG plot, and the
experiment's section of `OUT/report.html` (`reasonlab.analysis.report.write_experiments_report`).

Run folders are shared and resumable: a run's folder is `OUT/runs/HASH`, HASH a hash of its
resolved config (seed included; `key_text`: fields added later are left out while at their neutral
defaults), of the base model's identity and of the measurement's settings.
A folder with `experiment.json` (the measurement, written last and atomically) is finished and
reused as it is, by this experiment or any other that needs the same run (r1_zero,
reflection_emergence and test_time_scaling share their GRPO runs); a folder without it is an
interrupted run, continued from its newest checkpoint (`Trainer(resume=True)`).

The base model is the CPU demo's corpus and model (`reasonlab.models.base_model.pretrain_base`
with `reasonlab.demo.DEMO_PRETRAIN` updated by `BASE_PRETRAIN`, cached in `OUT/base` by its
settings hash): one base for every seed; a seed varies the RL run (its prompt stream and sampling: `run.seed` and `task.seed`).
`--quick` uses a random tiny model instead (`OUT/base-quick`) and a couple of steps: it checks the
mechanics, not the finding (stages shrink too: `QUICK_STAGE`, `QUICK_SFT`). Every arm evaluates on the same held-out problems, those of the base
recipe's `task` section (`task.held_out_fraction`, `reasonlab.tasks.split`); an arm may not
override `task.*`, and every run's `heldout.jsonl` is checked against them.

An arm may prepare its start model before RL (`Arm.stages`): pipeline stages (pretrain, cot,
sample, sft: `reasonlab.pipeline`'s stage runners, the one SFT and sampling path) from the base
model or from the demo's GRPO policy (`teacher`: the `grpo` arm's seed-0 run), each stage in
`OUT/stages/HASH`, HASH a hash of its resolved settings (seed included) and of its inputs'
identities: a finished stage (its pipeline `done.json`) is reused by any arm or experiment that
asks for the same, an interrupted one resumes as in a pipeline. The RL run's hash then covers the
model the stages made. Every row of SFT data a stage writes is checked to name a problem outside
the held-out share (`Context._check_data`), on top of the generators' and the SFT trainer's own
exclusion. The model the stages made is evaluated on the same held-out problems (`before`) as the
model after RL (`after`); an arm with `train=False` measures the stages' model alone. An
experiment with a `probe` (task params of a second distribution of the task) also evaluates the
base, the stages' model and the final model there (greedy), for transfer or forgetting.

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

from reasonlab.io import Busy, atomic_write_text, file_lock, read_jsonl
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
STAGE_KINDS = ("pretrain", "cot", "sample", "sft")
"""Pipeline stage kinds an arm may run before its RL run (`Arm.stages`)."""
MODEL_REFS = ("base", "teacher")
"""Models a stage may start from besides an earlier stage: the experiment's base model, and the
demo's GRPO policy (the `grpo` arm's run, seed 0: shared with r1_zero)."""
SFT_RECIPE = REPO_ROOT / "configs" / "sft_countdown_cpu.yaml"
"""The SFT recipe of an sft stage that names none."""
QUICK_STAGE: dict[str, dict[str, Any]] = {
    "pretrain": {"steps": 2, "problems": 8, "attempts": 2, "size": "tiny"},
    "cot": {"n": 8, "problems": 8},
    # a random model answers nothing right: keep every sample so that the SFT stage has rows
    "sample": {"problems": 4, "n": 2, "max_new_tokens": 16, "keep": "all", "k": 1},
}
"""Settings of every stage under `--quick` (after the arm's): a few rows, a couple of steps."""
QUICK_SFT = ["training.max_steps=2", "training.per_device_train_batch_size=1", "run.save_steps=1"]
"""Overrides of every sft stage under `--quick`."""
PROBE_EXAMPLES = 100
"""Problems of an experiment's probe distribution (`Experiment.probe`), default settings."""


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
    stages: list[dict[str, Any]] = field(default_factory=list)
    """Stages that make the arm's start model before RL (or, with `train=False`, the model the arm
    measures): `reasonlab.pipeline.StageConfig` fields as a dict, kinds pretrain, cot, sample and
    sft, in order. A stage's `model` is `base`, `teacher` (`MODEL_REFS`) or an earlier stage's
    name, an sft stage's `data` an earlier cot or sample stage's name; the RL run starts from the
    last stage that makes a model. The task, its held-out share and template are the base
    recipe's (a cot or sample stage's `params` update the recipe's task params: another
    distribution of the same task); the seed sets the cot, sample and sft stages' seeds."""


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
    probe: dict[str, Any] | None = None
    """Task params of a second distribution of the recipe's task (e.g. other targets), whose
    held-out problems every model of the experiment is also evaluated on (greedy), for transfer
    or forgetting; None: none."""


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
    """A finished arm x seed: its RL run folder (None for an arm without RL), its model folder and
    its measurement (`experiment.json`): held-out evaluations of the base (`base`), of the start
    model of RL (`before`: the base, or the model the arm's stages made) and of the arm's final
    model (`after`); the probe distribution's (`probe`: the same three, when the experiment has
    one); the stages' folders and summaries (`stages`); RL training curves (`curves`)."""

    run_dir: Path | None
    model_dir: Path
    data: dict[str, Any]

    @property
    def base(self) -> dict[str, Any]:
        return self.data.get("base", self.data["before"])

    @property
    def before(self) -> dict[str, Any]:
        return self.data["before"]

    @property
    def after(self) -> dict[str, Any]:
        return self.data["after"]

    @property
    def probe(self) -> dict[str, dict[str, Any]]:
        """{"base", "before", "after"} -> the probe distribution's greedy evaluation."""
        return self.data["probe"]

    def stage(self, kind: str) -> dict[str, Any]:
        """The last stage of `kind` the arm ran: {name, kind, folder, outputs, summary}."""
        found = [s for s in self.data.get("stages", []) if s["kind"] == kind]
        if not found:
            raise KeyError(f"the arm ran no {kind} stage")
        return found[-1]

    def curve(self, key: str) -> list[float]:
        """A metrics.jsonl series over the steps (empty for the base arm)."""
        return [v for v in self.data.get("curves", {}).get(key, []) if v is not None]


class Context:
    """What the runs of one invocation share: the output folder, the base model, the held-out
    problems (and the probe distribution's), and the settings (quick or default). Built once per
    `run_experiment`."""

    def __init__(
        self,
        out: Path,
        recipe: Path,
        *,
        quick: bool = False,
        eval_samples: int | None = None,
        probe: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
        callbacks: Sequence[Any] = (),
    ):
        from reasonlab import tasks
        from reasonlab.config import load_config
        from reasonlab.rl.config import TrainConfig
        from reasonlab.rl.data import split_examples
        from reasonlab.tasks import split

        self.out = Path(out)
        self.recipe = Path(recipe)
        self.quick = quick
        self.log = log
        self.callbacks = list(callbacks)
        self.eval_samples = (0 if quick else 4) if eval_samples is None else eval_samples
        self.quick_overrides = (
            [*QUICK_OVERRIDES, f"task.eval_size={QUICK_EVAL_EXAMPLES}"] if quick else []
        )
        self.base_cfg = load_config(
            TrainConfig, str(self.recipe), [*RECIPE_PINS, *self.quick_overrides]
        )
        self.task = tasks.get(self.base_cfg.task.name)
        _, self.held_out = split_examples(self.task, self.base_cfg.task)
        self.held_out_keys = sorted(self.task.key(ex) for ex in self.held_out)
        self.probe_params = probe
        self.probe_examples: list[Any] = []
        if probe is not None:
            t = self.base_cfg.task
            self.probe_examples = split.problems(
                self.task,
                QUICK_EVAL_EXAMPLES if quick else PROBE_EXAMPLES,
                seed=t.eval_seed,
                held_out=True,
                fraction=t.held_out_fraction,
                **{**t.params, **probe},
            )
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

        settings = base_settings(cfg, seed=0, pretrain=BASE_PRETRAIN)
        folder = self.out / "base"
        with file_lock(self.out / "locks" / "base"):  # several processes: one pretrains it
            record = pretrain_base(
                settings, folder, eval_examples=0, num_threads=cfg.run.num_threads, log=self.log
            )
        return folder, record["settings_hash"]

    def before(self) -> dict[str, Any]:
        """The base model's held-out evaluation (`reasonlab.demo.evaluate_held_out`), cached in
        OUT/base_eval-HASH.json."""
        if self._before is None:
            key = digest({"base": self.base_id, "eval": self._eval_settings()})
            self._before = self._evaluate(self.base_dir, self.out / f"base_eval-{key}.json")
        return self._before

    def _evaluate(
        self, model_dir: Path, path: Path, loaded: tuple[Any, Any] | None = None
    ) -> dict[str, Any]:
        """The held-out evaluation of `model_dir` (`loaded`: its model and tokenizer, already in
        memory), cached in `path`."""
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        from reasonlab import models
        from reasonlab.demo import evaluate_held_out

        model, tokenizer = loaded or models.load(model_dir)
        result = evaluate_held_out(
            model, tokenizer, self.task, self.held_out, self.base_cfg, self.eval_samples, 0
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        return result

    def probe_eval(self, model_dir: Path, ident: str) -> dict[str, Any]:
        """Greedy accuracy of `model_dir` (identity `ident`) on the probe distribution's held-out
        problems (`Experiment.probe`), cached in OUT/evals/probe-HASH.json."""
        key = digest({"model": ident, "probe": [self.task.key(e) for e in self.probe_examples]})
        path = self.out / "evals" / f"probe-{key}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        from reasonlab import models
        from reasonlab.eval.runner import greedy_and_sampled
        from reasonlab.rollout import get_engine

        model, tokenizer = models.load(model_dir)
        cfg = self.base_cfg
        results = greedy_and_sampled(
            get_engine("hf", model=model, tokenizer=tokenizer),
            self.task,
            self.probe_examples,
            template=cfg.task.template,
            max_new_tokens=cfg.rollout.max_new_tokens,
            stop=cfg.rollout.stop,
            samples=0,
            seed=0,
        )
        greedy = results["greedy"].headline()
        result = {k: greedy[k] for k in ("accuracy", "mean_length", "truncation_rate")}
        result["params"] = {**cfg.task.params, **(self.probe_params or {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        return result

    def _eval_settings(self) -> dict[str, Any]:
        return {"samples": self.eval_samples, "held_out": digest(self.held_out_keys)}

    # -- stages before RL -------------------------------------------------------------------

    def teacher(self) -> tuple[Path, str]:
        """The demo's GRPO policy (the `grpo` arm as it is, seed 0; the same run folder as
        r1_zero's) and its identity, for stages whose `model` is `teacher`."""
        record = self.train(Arm("grpo"), 0)
        assert record.run_dir is not None
        return record.model_dir, record.run_dir.name

    def stage_config(self, arm: Arm, spec: dict[str, Any], seed: int) -> Any:
        """`spec` (one of `arm.stages`) as a `StageConfig`: the base recipe's task, held-out share
        and template; the seed; the quick settings; inputs still named as in the spec."""
        from reasonlab.config import ConfigError, config_from_dict
        from reasonlab.pipeline import StageConfig

        where = f"arm {arm.name!r} stage {spec.get('name', '?')!r}"
        kind = spec.get("kind")
        if kind not in STAGE_KINDS:
            raise ExperimentError(f"{where}: kind {kind!r}; valid: {', '.join(STAGE_KINDS)}")
        spec = {**spec, "name": kind}
        if kind == "sft":  # the CPU SFT recipe unless the stage names one
            spec["sft"] = {"recipe": str(SFT_RECIPE), **spec.get("sft", {})}
        try:
            stage = config_from_dict(StageConfig, spec, where)
        except ConfigError as err:
            raise ExperimentError(str(err)) from None
        t = self.base_cfg.task
        section = stage.settings()
        if kind in ("cot", "sample"):
            section.task = t.name
            section.params = {**t.params, **section.params}
            section.held_out_fraction = t.held_out_fraction
            section.template = t.template
            section.seed = seed
            if kind == "sample":
                section.source = "train"
                section.problem_seed = seed
                section.max_new_tokens = self.base_cfg.rollout.max_new_tokens
        if kind == "pretrain":  # a base of its own (distill_vs_rl's student), the recipe's task
            section.task = t.name
            section.params = dict(t.params)
            section.template = t.template
        if kind == "sft":
            section.overrides = [
                *section.overrides,
                f"task.name={t.name}",
                f"task.params={json.dumps(t.params)}",
                f"task.template={t.template}",
                f"task.held_out_fraction={t.held_out_fraction}",
                "task.eval_examples=0",  # measured here, on the experiment's held-out problems
                f"training.seed={seed}",
                f"run.num_threads={self.base_cfg.run.num_threads}",
                "run.progress=false",
                *(QUICK_SFT if self.quick else []),
            ]
        if self.quick:
            for key, value in QUICK_STAGE.get(kind, {}).items():
                setattr(section, key, value)
        setattr(stage, kind, section)
        return stage

    def prepare(self, arm: Arm, seed: int) -> tuple[Path, str, list[dict[str, Any]]]:
        """Run the arm's stages for `seed` (`Arm.stages`) through the pipeline's stage runners;
        returns the start model, its identity and what each stage did. Each stage runs in
        OUT/stages/HASH, HASH a hash of its resolved settings and of its inputs' identities: a
        finished stage (its `done.json`) is reused by any arm and experiment that asks for the
        same, an interrupted one resumes as a pipeline stage does (SFT from its checkpoint).
        The data a cot or sample stage writes is checked against the held-out problems."""
        from reasonlab.pipeline import MODEL_KINDS, Pipeline, PipelineConfig, PipelineError

        model, model_id = self.base_dir, self.base_id
        made: dict[str, tuple[dict[str, str], str]] = {}  # stage name -> (outputs, identity)
        done: list[dict[str, Any]] = []
        for spec in arm.stages:
            stage = self.stage_config(arm, spec, seed)
            name = spec.get("name", stage.kind)
            inputs: dict[str, str] = {}
            for what in ("model", "data"):
                ref = getattr(stage, what)
                if ref is None:
                    continue
                if what == "model" and ref == "base":
                    path, ident = str(self.base_dir), self.base_id
                elif what == "model" and ref == "teacher":
                    teacher_dir, ident = self.teacher()
                    path = str(teacher_dir)
                elif ref in made:
                    path, ident = made[ref][0].get(what, ""), made[ref][1]
                    if not path:
                        raise ExperimentError(
                            f"arm {arm.name!r} stage {name!r}: stage {ref!r} makes no {what}"
                        )
                else:
                    valid = (
                        [*MODEL_REFS, "an earlier stage"]
                        if what == "model"
                        else ["an earlier stage"]
                    )
                    raise ExperimentError(
                        f"arm {arm.name!r} stage {name!r}: {what} {ref!r} is unknown; valid: "
                        + ", ".join(valid)
                    )
                setattr(stage, what, path)
                inputs[what] = ident
            key = stage_key(stage, inputs)
            folder = self.out / "stages" / key[:12]
            with file_lock(self.out / "locks" / f"stage-{key[:12]}"):  # one process runs it
                finished = (folder / stage.kind / "done.json").is_file()
                self.log(
                    f"  {arm.name} seed {seed}: stage {name} ({stage.kind}) "
                    + ("reused" if finished else "running")
                    + f" in {folder}"
                )
                if not finished:  # a finished stage is found by its key (path-free) alone
                    pipe = Pipeline(
                        PipelineConfig(
                            out_dir=str(folder),
                            stages=[stage],
                            num_threads=self.base_cfg.run.num_threads,
                        ),
                        log=self.log,
                    )
                    try:
                        pipe.run()
                    except PipelineError as err:
                        raise ExperimentError(f"arm {arm.name!r} stage {name!r}: {err}") from None
            record = json.loads((folder / stage.kind / "done.json").read_text(encoding="utf-8"))
            outputs = {what: _in_folder(path, folder) for what, path in record["outputs"].items()}
            if "data" in outputs:
                self._check_data(Path(outputs["data"]), where=f"arm {arm.name!r} stage {name!r}")
            made[name] = (outputs, key)
            done.append(
                {
                    "name": name,
                    "kind": stage.kind,
                    "folder": str(folder),
                    "outputs": outputs,
                    "summary": record.get("summary", {}),
                    "seconds": record.get("seconds"),
                }
            )
            if stage.kind in MODEL_KINDS:
                model, model_id = Path(outputs["model"]), key
        return model, model_id, done

    def _check_data(self, path: Path, where: str) -> None:
        """Every row of SFT data names its problem (`key`), none of which is held out: not one
        of the experiment's held-out problems, and outside the held-out share."""
        from reasonlab.tasks.split import share_position

        held_out = set(self.held_out_keys) | {self.task.key(e) for e in self.probe_examples}
        fraction = self.base_cfg.task.held_out_fraction
        for n, row in enumerate(read_jsonl(path), start=1):
            key = row.get("key")
            if key is None or key in held_out or share_position(key) < fraction:
                raise ExperimentError(
                    f"{where}: {path}:{n}: an SFT row "
                    + ("names no problem (no key)" if key is None else f"of held-out problem {key}")
                    + "; SFT data must come from outside the held-out share"
                )

    # -- arms -------------------------------------------------------------------------------

    def arm_overrides(self, arm: Arm, seed: int, model_dir: Path | None = None) -> list[str]:
        """Every override of the arm's run, in order: start model (`model_dir`, else the base),
        `RECIPE_PINS`, the arm's, the quick settings (which win), the seed, and no progress bar."""
        bad = [o for o in arm.overrides if o.partition("=")[0].strip().startswith("task.")]
        if bad:
            raise ExperimentError(
                f"arm {arm.name!r}: {bad[0]!r} overrides task.*; every arm must evaluate on the "
                "base recipe's held-out problems"
            )
        return [
            f"model.path={model_dir or self.base_dir}",
            *RECIPE_PINS,
            *arm.overrides,
            *self.quick_overrides,
            f"run.seed={seed}",
            f"task.seed={seed}",
            "run.progress=false",
        ]

    def command(self, arm: Arm) -> str:
        """The `reasonlab train` command that reruns the arm (SEED for the seed), after its
        stages when it has some (START for the model they make)."""
        stages = " -> ".join(f"{s.get('name', s['kind'])} ({s['kind']})" for s in arm.stages)
        if not arm.train:
            if stages:
                return f"(no RL: the model of its stages, {stages}; see results.json 'stages')"
            return f"(no RL: the base model, {self.base_dir})"
        items = [str(_shown(self.recipe)), *self.arm_overrides(arm, 0)]
        items = [
            i.replace("run.seed=0", "run.seed=SEED").replace("task.seed=0", "task.seed=SEED")
            for i in items
        ]
        if stages:
            items[1] = "model.path=START"
        line = "reasonlab train " + " ".join(shlex.quote(i) for i in items) + " --out RUN_DIR"
        return f"stages {stages} make START; then {line}" if stages else line

    def base_record(self) -> RunRecord:
        before = self.before()
        data = {"base": before, "before": before, "after": before, "curves": {}}
        record = RunRecord(None, self.base_dir, data)
        return self._with_probe(record, self.base_dir, self.base_id, self.base_id)

    def train(self, arm: Arm, seed: int, wait: bool = True) -> RunRecord:
        """The arm's run for `seed`: its stages (`prepare`), then the RL run, reused when
        finished, resumed when interrupted, else trained; then measured once (experiment.json).
        The RL run is locked (`OUT/locks/run-HASH`) while this process trains or reads it;
        `wait=False` raises `Busy` when another process holds it."""
        if not arm.train and not arm.stages:
            return self.base_record()
        start_dir, start_id, stages = self.prepare(arm, seed)
        if not arm.train:  # the model of the stages, measured
            start = self._evaluate(start_dir, self.out / "evals" / f"{start_id}.json")
            data = {"base": self.before(), "before": start, "after": start, "stages": stages}
            return self._with_probe(RunRecord(None, start_dir, data), start_dir, start_id, start_id)
        from reasonlab.config import load_config
        from reasonlab.rl.config import TrainConfig

        model_dir = start_dir if arm.stages else None
        cfg = load_config(TrainConfig, str(self.recipe), self.arm_overrides(arm, seed, model_dir))
        cfg.run.out_dir = ""
        ids = {"config": key_text(cfg), "base": self.base_id, "eval": self._eval_settings()}
        if arm.stages:  # (arms without stages keep the keys of the runs made before stages)
            ids["start"] = start_id
        key = digest(ids)
        with file_lock(self.out / "locks" / f"run-{key[:12]}", wait=wait):
            return self._train(arm, seed, cfg, key, start_dir, start_id, stages)

    def _train(
        self,
        arm: Arm,
        seed: int,
        cfg: Any,
        key: str,
        start_dir: Path,
        start_id: str,
        stages: list[dict[str, Any]],
    ) -> RunRecord:
        from reasonlab.rl.checkpoint import latest_checkpoint
        from reasonlab.rl.trainer import Trainer

        run_dir = self.out / "runs" / key[:12]
        cfg.run.out_dir = str(run_dir)
        done = run_dir / "experiment.json"
        if done.is_file():
            self.log(f"  {arm.name} seed {seed}: finished run reused ({run_dir})")
            data = json.loads(done.read_text(encoding="utf-8"))
            record = RunRecord(run_dir, run_dir / data["model"], data)
            return self._with_probe(record, start_dir, start_id, key)
        resume = (run_dir / "config.yaml").is_file()
        self.log(f"  {arm.name} seed {seed}: {'resuming' if resume else 'training'} {run_dir}")
        tic = time.perf_counter()
        trainer = Trainer(
            cfg,
            eval_examples=self.held_out,
            resume=resume,
            callbacks=self.callbacks,
        )
        trainer.train()
        self._check_held_out(run_dir)
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise ExperimentError(f"{run_dir}: the run finished without a checkpoint")
        seconds = time.perf_counter() - tic
        after = self._evaluate(
            checkpoint / "model", run_dir / "after_eval.json", (trainer.model, trainer.tokenizer)
        )
        rows = list(read_jsonl(run_dir / "metrics.jsonl", drop_partial_last_line=True))
        curve_keys = sorted({k for row in rows for k in row if not k.startswith("time/")})
        start = (
            self._evaluate(start_dir, self.out / "evals" / f"{start_id}.json")
            if arm.stages
            else self.before()
        )
        data = {
            "arm": arm.name,
            "seed": seed,
            "model": str((checkpoint / "model").relative_to(run_dir)),
            "base": self.before(),
            "before": start,
            "after": after,
            "stages": stages,
            "curves": {
                k: [r.get(k) if isinstance(r.get(k), int | float) else None for r in rows]
                for k in curve_keys
            },
            "seconds": seconds,
            "resumed": resume,
        }
        atomic_write_text(done, json.dumps(data, indent=2) + "\n")
        return self._with_probe(
            RunRecord(run_dir, run_dir / data["model"], data), start_dir, start_id, key
        )

    def _with_probe(
        self, record: RunRecord, start_dir: Path, start_id: str, final_id: str
    ) -> RunRecord:
        """`record` with the probe distribution's evaluations of the base, the start model and
        the final model (`record.probe`), when the experiment has a probe. They are cached by
        model (OUT/evals), not part of the run, so a run is shared with experiments without one."""
        if self.probe_params is not None:
            record.data["probe"] = {
                "base": self.probe_eval(self.base_dir, self.base_id),
                "before": self.probe_eval(start_dir, start_id),
                "after": self.probe_eval(record.model_dir, final_id),
            }
        return record

    def _check_held_out(self, run_dir: Path) -> None:
        keys = sorted(row["key"] for row in read_jsonl(run_dir / "heldout.jsonl"))
        if keys != self.held_out_keys:
            raise ExperimentError(
                f"{run_dir}/heldout.jsonl: the run evaluated other problems than the experiment's "
                f"{len(self.held_out_keys)} held-out ones"
            )


BASE_PRETRAIN: dict[str, Any] = {"packing": "samples", "steps": 2400}
"""The experiments' base: the demo's pretraining as every experiment in docs/findings.md was
measured with it (2400 steps of greedily packed rows). The demo has since moved to best-fit
decreasing packing and 2150 steps (the same epochs, ~10% less time) for its 10-minute goal; the
experiments keep this base so that their cached runs and published figures stay valid."""

RECIPE_PINS: tuple[str, ...] = ("batching.group_by_length=false", "batching.micro_batch_size=null")
"""Overrides of the demo recipe that every arm starts from: its RL update as the experiments were
measured (one pass over the step's responses, padded to the longest). The demo now cuts it into
length-grouped micro-batches of 32 (faster, the same loss up to float rounding)."""

KEY_OMITS_AT_DEFAULT: dict[str, Any] = {"batching.group_by_length": False}
"""Recipe fields added after runs were cached in OUT: left out of a run's key while at these
values (which behave as the code before them did), so those runs stay reusable. A field added to
`TrainConfig` later belongs here with its neutral default; note that the key is the YAML text of
`config_to_yaml`, field docstrings included, so editing one changes every run's key."""


def _in_folder(path: str, folder: Path) -> str:
    """A stage output's path as recorded in its done.json (as OUT was spelled when the stage
    ran), re-anchored in the stage's `folder` as OUT is spelled now when it does not resolve
    from here (another working folder, or OUT given another way: stage keys are path-free)."""
    if not path or Path(path).exists():
        return path
    parts = Path(path).parts
    if folder.name in parts:
        at = len(parts) - 1 - parts[::-1].index(folder.name)
        moved = folder.joinpath(*parts[at + 1 :])
        if moved.exists():
            return str(moved)
    raise ExperimentError(
        f"{folder}: the stage's output {path} (its done.json) is not found from {Path.cwd()}; "
        f"run from the folder OUT was made from, or remove {folder} to make the stage again"
    )


def stage_key(stage: Any, inputs: dict[str, str]) -> str:
    """The hash of a stage's folder: its settings and its inputs' identities, without where this
    checkout or OUT lie on disk (the input paths are stood for by their identities, a recipe
    file inside the repository by its path from the repository root), so the same stage is
    reused from another checkout or another spelling of OUT."""
    settings = dataclasses.asdict(stage)
    for what in inputs:
        settings[what] = ""
    for section in settings.values():
        recipe = section.get("recipe") if isinstance(section, dict) else None
        where = Path(recipe).resolve() if recipe else None
        if where is not None and where.is_relative_to(REPO_ROOT):
            section["recipe"] = where.relative_to(REPO_ROOT).as_posix()
    return digest({"stage": settings, "inputs": inputs})


def key_text(cfg: Any) -> str:
    """The resolved RL recipe as it enters a run's key: `config_to_yaml(cfg)` without the fields
    of `KEY_OMITS_AT_DEFAULT` that are at their neutral values (each with its comment lines)."""
    from reasonlab.config import config_to_yaml

    lines = config_to_yaml(cfg).split("\n")
    for dotted, neutral in KEY_OMITS_AT_DEFAULT.items():
        section, name = dotted.split(".")
        if getattr(getattr(cfg, section), name) != neutral:
            continue
        start = lines.index(f"{section}:")
        at = next(i for i in range(start, len(lines)) if lines[i].startswith(f"  {name}: "))
        first = at
        while lines[first - 1].startswith("  #"):
            first -= 1
        del lines[first : at + 1]
    return "\n".join(lines)


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
    train_only: bool = False,
) -> dict[str, Any]:
    """Run experiment `name` into `out` (see the module docstring); returns results.json's
    content, also written to OUT/NAME/results.json with OUT/NAME/NAME.png and OUT/report.html.

    Several processes may run it on the same `out` at once (`reasonlab experiment --jobs`): each
    run, stage and the base are file-locked (`OUT/locks`), a process first trains the runs no
    other holds, then waits for the rest; measurements are shared out the same way (each measure
    caches its evaluations in OUT). `train_only` (a `--jobs` helper process): return
    {"experiment", "runs"} once every run is trained and every measurement no other process held
    is made, without writing results."""
    exp = get(name)
    if exp.needs:
        raise ExperimentError(f"experiment {name!r} needs {exp.needs}; it cannot run yet")
    count = exp.default_seeds if seeds is None else seeds
    if count < 1:
        raise ExperimentError(f"--seeds must be >= 1, got {count}")
    out = Path(out)
    start = time.perf_counter()
    ctx = context or Context(
        out,
        exp.recipe,
        quick=quick,
        eval_samples=eval_samples,
        probe=exp.probe,
        log=log,
        callbacks=callbacks,
    )
    seed_list = list(range(count))
    table: dict[str, dict[str, list[float]]] = {}
    run_dirs: dict[str, list[str | None]] = {}
    stage_dirs: dict[str, list[list[str]]] = {}
    log(f"{name}: {len(exp.arms)} arms x {count} seeds into {out}")
    # Runs another process holds (`--jobs`, or a second command on the same OUT) are left for
    # later; this process trains the others meanwhile, then waits for those.
    pairs = [(arm, seed) for arm in exp.arms for seed in seed_list]
    records: dict[tuple[str, int], RunRecord] = {}
    for wait in (False, True):
        for arm, seed in pairs:
            if (arm.name, seed) not in records:
                try:
                    records[arm.name, seed] = ctx.train(arm, seed, wait=wait)
                except Busy:
                    log(f"  {arm.name} seed {seed}: another process is training it")
    # Measurements too are shared out: the measures cache what costs (evaluations, searches) in
    # OUT, so a pair another process measured costs this one a file read once its lock is free.
    assert exp.measure is not None
    measured: dict[tuple[str, int], dict[str, float]] = {}
    for wait in (False,) if train_only else (False, True):
        for arm, seed in pairs:
            if (arm.name, seed) in measured:
                continue
            lock = out / "locks" / f"measure-{name}-{digest([arm.name, seed, quick])[:12]}"
            try:
                with file_lock(lock, wait=wait):
                    measured[arm.name, seed] = exp.measure(ctx, arm, seed, records[arm.name, seed])
            except Busy:
                log(f"  {arm.name} seed {seed}: another process is measuring it")
    if train_only:
        return {"experiment": name, "runs": len(records)}
    for arm, seed in pairs:
        record = records[arm.name, seed]
        values = measured[arm.name, seed]
        for key in exp.metrics:
            table.setdefault(arm.name, {}).setdefault(key, []).append(float(values[key]))
        run_dirs.setdefault(arm.name, []).append(
            None if record.run_dir is None else str(record.run_dir)
        )
        stage_dirs.setdefault(arm.name, []).append(
            [s["folder"] for s in record.data.get("stages", [])]
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
            "stages": arm.stages,
            "command": ctx.command(arm),
            "runs": run_dirs[arm.name],
            "stage_runs": stage_dirs[arm.name],
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
        "probe": None
        if exp.probe is None
        else {
            "params": {**ctx.base_cfg.task.params, **exp.probe},
            "examples": len(ctx.probe_examples),
        },
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
