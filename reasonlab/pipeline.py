"""Pipelines: stages (pretrain | sft | sample | rl | eval) run in order, each feeding the next.

    reasonlab pipeline configs/pipelines/rl_rs_tiny.yaml [key=value ...]

A recipe (`PipelineConfig`) lists stages by name. Each stage writes into `out_dir/<name>/` and
names what it produced in `out_dir/<name>/done.json`:

| kind | reads | writes (`outputs`) |
|---|---|---|
| `pretrain` | `pretrain:` (`reasonlab.models.base_model.PretrainSettings`) | `model` (a Hugging Face folder) |
| `sample` | `model`, `sample:` (`SampleStage`) | `data` (rejection-sampled JSONL, `reasonlab.sft.sample`) |
| `sft` | `model`, `data`, `sft:` (a recipe and overrides) | `model` |
| `rl` | `model` (optional), `rl:` (a `reasonlab train` recipe and overrides) | `model` (the final policy), `run` |
| `eval` | `model`, `eval:` (`EvalStage`) | `results` (results.json of `reasonlab eval`) |

A stage's `model` and `data` name an earlier stage (its output is used) or a path. A stage whose
`done.json` exists is not run again (its settings must be unchanged: a changed stage is an error
that says how to re-run it, `--from NAME`); an interrupted pipeline starts again at the first
stage without one, and that stage resumes what it can: sampling and evaluation from their stored
generations, RL from its newest checkpoint (when its recipe saves them: `run.save_every`),
pretraining from scratch.

The `sft` stage calls the SFT trainer through `run_sft` alone (issue 10 part A).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reasonlab.io import atomic_write_text
from reasonlab.models.base_model import PretrainSettings

KINDS = ("pretrain", "sft", "sample", "rl", "eval")
DONE = "done.json"
MODEL_KINDS = ("pretrain", "sft", "rl")
"""Stage kinds whose output is a model."""


class PipelineError(ValueError):
    """A recipe that cannot run, or a stage whose finished output disagrees with its settings."""


@dataclass
class SampleStage:
    """Rejection sampling (`reasonlab sample`): problems, sampling and the keep rule."""

    task: str = "countdown"
    """Task name (see `reasonlab tasks`)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Task generator parameters."""
    source: str = "train"
    """train (outside the held-out share), heldout or benchmark:NAME (evaluation only)."""
    problems: int = 100
    """How many problems."""
    held_out_fraction: float = 0.2
    """Share of the problem space held out for evaluation (the RL run's task.held_out_fraction)."""
    problem_seed: int = 0
    """Seed of the problem draw."""
    template: str = "r1-zero"
    """Prompt template."""
    n: int = 8
    """Samples per problem."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus threshold."""
    max_new_tokens: int = 256
    """Token limit per completion."""
    seed: int = 0
    """Sampling seed."""
    keep: str = "correct"
    """Keep rule: correct, shortest-correct, first-correct, all."""
    k: int | None = None
    """At most this many rows per problem."""
    min_tokens: int = 0
    """Drop shorter completions."""
    max_tokens: int | None = None
    """Drop longer completions."""
    reward: str = "r1"
    """Accuracy scheme of each row's reward."""
    batch_size: int = 8
    """Problems per generation batch."""


@dataclass
class TrainStage:
    """A training stage driven by its own recipe (`reasonlab train` for rl; the SFT trainer's)."""

    recipe: str = ""
    """The stage's recipe (a path as given, else relative to the pipeline recipe's folder)."""
    overrides: list[str] = field(default_factory=list)
    """`key.sub=value` overrides of the recipe (the pipeline sets the model path and out_dir)."""


@dataclass
class EvalStage:
    """Evaluation on benchmarks (`reasonlab eval`)."""

    benchmarks: list[str] = field(default_factory=lambda: ["countdown_demo"])
    """Benchmark names."""
    n: int = 4
    """Samples per example."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus threshold."""
    max_new_tokens: int = 256
    """Token limit per completion."""
    limit: int | None = None
    """First N examples of each benchmark."""
    batch_size: int = 8
    """Examples per generation batch."""
    seed: int = 0
    """Sampling seed."""
    template: str | None = None
    """Prompt template (None: each benchmark's own)."""


@dataclass
class StageConfig:
    """One stage of a pipeline."""

    name: str
    """Unique name; its folder is out_dir/<name>."""
    kind: Literal["pretrain", "sft", "sample", "rl", "eval"]
    """What the stage does."""
    model: str | None = None
    """The model it starts from: an earlier stage's name (pretrain, sft or rl) or a folder."""
    data: str | None = None
    """sft: its training data, a sample stage's name or a JSONL path."""
    pretrain: PretrainSettings | None = None
    """pretrain: the base model's settings (`reasonlab pretrain`)."""
    sample: SampleStage | None = None
    """sample: problems, sampling and keep rule."""
    rl: TrainStage | None = None
    """rl: the `reasonlab train` recipe and overrides."""
    sft: TrainStage | None = None
    """sft: the SFT recipe and overrides."""
    eval: EvalStage | None = None
    """eval: benchmarks and sampling."""

    def settings(self) -> Any:
        """This kind's section (its defaults when the recipe leaves it out)."""
        section = getattr(self, self.kind)
        if section is not None:
            return section
        return {
            "pretrain": PretrainSettings,
            "sample": SampleStage,
            "rl": TrainStage,
            "sft": TrainStage,
            "eval": EvalStage,
        }[self.kind]()

    def validate(self) -> None:
        other = [k for k in KINDS if k != self.kind and getattr(self, k) is not None]
        if other:
            raise ValueError(
                f"stage {self.name!r} is a {self.kind} stage but has a {other[0]!r} section"
            )
        if self.kind in ("sample", "eval", "sft") and not self.model:
            raise ValueError(f"stage {self.name!r} ({self.kind}) needs a model")
        if self.kind == "sft" and not self.data:
            raise ValueError(f"stage {self.name!r} (sft) needs data")
        if self.kind == "sft":  # refused before any stage runs; drop this when run_sft is wired
            raise ValueError(
                f"stage {self.name!r}: the sft stage is not wired to the SFT trainer yet "
                "(reasonlab.pipeline.run_sft)"
            )
        if self.kind in ("rl", "sft") and not self.settings().recipe:
            raise ValueError(f"stage {self.name!r} ({self.kind}) needs {self.kind}.recipe")


@dataclass
class PipelineConfig:
    """A pipeline: stages run in order, each stage's outputs named for the next."""

    out_dir: str = "runs/pipeline"
    """Folder of the pipeline; each stage writes into out_dir/<name>."""
    stages: list[StageConfig] = field(default_factory=list)
    """The stages, in order."""
    num_threads: int | None = None
    """torch's intra-op threads for the pretrain, sample and eval stages (None: torch's default;
    an rl stage uses its recipe's run.num_threads)."""

    def validate(self) -> None:
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        seen: dict[str, str] = {}
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}")
            if not stage.name or "/" in stage.name or stage.name.startswith("."):
                raise ValueError(f"stage name {stage.name!r} must be a plain folder name")
            for what, wanted in (("model", MODEL_KINDS), ("data", ("sample",))):
                ref = getattr(stage, what)
                if ref in seen and seen[ref] not in wanted:
                    raise ValueError(
                        f"stage {stage.name!r}: {what} {ref!r} is a {seen[ref]} stage, which "
                        f"gives no {what} (stages that do: {', '.join(wanted)})"
                    )
            seen[stage.name] = stage.kind


def fingerprint(stage: StageConfig, inputs: dict[str, str]) -> str:
    """A hash of a stage's settings and resolved inputs: a finished stage with another one was
    made differently."""
    blob = json.dumps(
        {"stage": dataclasses.asdict(stage), "inputs": inputs}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Pipeline:
    """Runs a `PipelineConfig` (see the module docstring). `base` is the folder stage recipes and
    relative paths are resolved against (the pipeline recipe's folder), after the working
    directory."""

    def __init__(
        self, config: PipelineConfig, base: Path | None = None, log: Callable[[str], None] = print
    ):
        self.config, self.base, self.log = config, base, log
        self.out = Path(config.out_dir)
        self.outputs: dict[str, dict[str, str]] = {}

    def stage_dir(self, stage: StageConfig) -> Path:
        return self.out / stage.name

    def restart_from(self, name: str) -> None:
        """Forget that `name` and every later stage finished (their folders are kept, so
        sampling and evaluation reuse stored generations with unchanged settings)."""
        names = [s.name for s in self.config.stages]
        if name not in names:
            raise PipelineError(f"no stage {name!r}; stages: {', '.join(names)}")
        for stage in self.config.stages[names.index(name) :]:
            (self.stage_dir(stage) / DONE).unlink(missing_ok=True)

    def run(self) -> dict[str, dict[str, str]]:
        """Run every unfinished stage in order; returns each stage's outputs."""
        import torch

        threads = torch.get_num_threads()
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> dict[str, dict[str, str]]:
        for i, stage in enumerate(self.config.stages, start=1):
            inputs = self._inputs(stage)
            done = self.stage_dir(stage) / DONE
            digest = fingerprint(stage, inputs)
            header = f"[{i}/{len(self.config.stages)}] {stage.name} ({stage.kind})"
            if done.is_file():
                record = json.loads(done.read_text())
                if record.get("fingerprint") != digest:
                    raise PipelineError(
                        f"stage {stage.name!r} finished with other settings or inputs than the "
                        f"recipe's now ({done}); re-run it and the stages after it with --from "
                        f"{stage.name}, or use another out_dir"
                    )
                self.log(f"{header}: done earlier, outputs {record['outputs']}")
                self.outputs[stage.name] = record["outputs"]
                continue
            self.log(f"{header}: running")
            start = time.perf_counter()
            outputs, summary = RUNNERS[stage.kind](self, stage, inputs, self.stage_dir(stage))
            record = {
                "stage": stage.name,
                "kind": stage.kind,
                "inputs": inputs,
                "outputs": outputs,
                "summary": summary,
                "seconds": round(time.perf_counter() - start, 3),
                "fingerprint": digest,
            }
            atomic_write_text(done, json.dumps(record, indent=2, default=str) + "\n")
            self.outputs[stage.name] = outputs
            self.log(f"{header}: done in {record['seconds']:.0f}s, outputs {outputs}")
        return self.outputs

    def _inputs(self, stage: StageConfig) -> dict[str, str]:
        inputs = {}
        for what in ("model", "data"):
            ref = getattr(stage, what)
            if ref is None:
                continue
            if ref in self.outputs:
                inputs[what] = self.outputs[ref][what]
            elif any(s.name == ref for s in self.config.stages):
                raise PipelineError(f"stage {stage.name!r}: {what} {ref!r} is a later stage")
            else:
                inputs[what] = str(self.path(ref, what=f"stage {stage.name!r} {what}"))
        return inputs

    def path(self, ref: str, what: str) -> Path:
        """`ref` as given when it exists, else relative to the recipe's folder."""
        candidates = [Path(ref)] + ([self.base / ref] if self.base is not None else [])
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise PipelineError(
            f"{what}: {ref!r} is neither an earlier stage nor an existing path "
            f"(looked in {', '.join(str(c) for c in candidates)})"
        )


# --- the stage runners: (pipeline, stage, inputs, folder) -> (outputs, summary) -----------


def run_pretrain(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    from reasonlab.models.base_model import pretrain_base

    record = pretrain_base(
        stage.settings(),
        out / "model",
        eval_examples=0,
        num_threads=pipe.config.num_threads,
        log=pipe.log,
    )
    summary = {"final_loss": record["train"].get("final_loss"), "corpus": record["corpus"]}
    return {"model": str(out / "model")}, summary


def _engine(model_dir: str, cfg: SampleStage | EvalStage) -> tuple[Any, Any, Any]:
    """The Hugging Face rollout engine on `model_dir`, its tokenizer, and `cfg`'s sampling."""
    from reasonlab import models
    from reasonlab.rollout import get_engine
    from reasonlab.rollout.base import SamplingParams

    model, tokenizer = models.load(model_dir)
    params = SamplingParams(
        n=cfg.n,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
    )
    return get_engine("hf", model=model, tokenizer=tokenizer), tokenizer, params


def run_sample(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    from reasonlab import tasks
    from reasonlab.eval.store import SettingsMismatch
    from reasonlab.sft.sample import KeepRule, Sampler, problems_for

    cfg: SampleStage = stage.settings()
    task = tasks.get(cfg.task)
    examples = problems_for(
        task,
        cfg.source,
        cfg.problems,
        seed=cfg.problem_seed,
        params=cfg.params,
        held_out_fraction=cfg.held_out_fraction,
    )
    settings = {
        "model": str(Path(inputs["model"]).resolve()),
        **dataclasses.asdict(cfg),
        "problems": len(examples),
    }
    for name in ("keep", "k", "min_tokens", "max_tokens", "reward"):
        settings.pop(name)  # they filter stored generations; they do not make them
    keep = KeepRule(cfg.keep, k=cfg.k, min_tokens=cfg.min_tokens, max_tokens=cfg.max_tokens)
    data = out / "samples.jsonl"
    sampler = Sampler(
        task, data, keep, settings, source=cfg.source, reward=cfg.reward, template=cfg.template
    )
    engine, tokenizer, params = _engine(inputs["model"], cfg)
    try:
        summary = sampler.run(
            engine, examples, params, tokenizer=tokenizer, batch_size=cfg.batch_size
        )
    except SettingsMismatch:  # left by an earlier version of this stage (`--from`): obsolete
        pipe.log(f"{stage.name}: replacing generations made with other settings")
        summary = sampler.run(
            engine, examples, params, tokenizer=tokenizer, batch_size=cfg.batch_size, overwrite=True
        )
    pipe.log(
        f"kept {summary.kept}/{summary.samples} samples; pass@{summary.n} {summary.pass_at_n:.3f}"
    )
    result = summary.to_dict()
    result.pop("settings")
    return {"data": str(data)}, result


def run_rl(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    from reasonlab import models
    from reasonlab.config import load_config
    from reasonlab.rl.config import TrainConfig
    from reasonlab.rl.trainer import Trainer

    cfg: TrainStage = stage.settings()
    recipe = pipe.path(cfg.recipe, what=f"stage {stage.name!r} rl.recipe")
    run_dir = out / "run"
    overrides = [*cfg.overrides, f"run.out_dir={run_dir}"]
    if "model" in inputs:
        overrides.append(f"model.path={inputs['model']}")
    config = load_config(TrainConfig, recipe, overrides)
    # an interrupted stage continues from its newest checkpoint (or starts over without one)
    resume = (run_dir / "metrics.jsonl").exists()
    trainer = Trainer(config, resume=resume)
    result = trainer.train()
    models.save(trainer.model, trainer.tokenizer, out / "model")
    summary = {
        "steps": result["steps"],
        "final": result["final"],
        "eval": result["eval"],
    }
    return {"model": str(out / "model"), "run": str(run_dir)}, summary


def run_eval(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    from reasonlab.eval import benchmarks, report
    from reasonlab.eval.runner import evaluate
    from reasonlab.eval.store import GenerationStore, SettingsMismatch

    cfg: EvalStage = stage.settings()
    engine, tokenizer, params = _engine(inputs["model"], cfg)
    results = []
    for bench in benchmarks.parse_list(",".join(cfg.benchmarks)):
        task = bench.task_instance()
        template = cfg.template or bench.template
        settings = {
            "model": str(Path(inputs["model"]).resolve()),
            "benchmark": bench.name,
            "template": template,
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "benchmarks"},
        }
        store = GenerationStore(out, bench.name)
        try:
            store.open(settings)
        except SettingsMismatch:  # left by an earlier version of this stage (`--from`): obsolete
            pipe.log(f"{stage.name}: replacing {bench.name} generations made with other settings")
            store.open(settings, overwrite=True)
        result = evaluate(
            engine,
            task,
            bench.load(limit=cfg.limit, task=task),
            params,
            template=template,
            tokenizer=tokenizer,
            batch_size=cfg.batch_size,
            store=store,
            benchmark=bench.name,
            group_by=bench.group_by,
            settings=settings,
        )
        results.append(result)
        pipe.log(
            f"{bench.name}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if "@" in k)
        )
    report.write_results(out, results)
    summary = {r.benchmark: {k: v for k, v in r.metrics.items() if "@" in k} for r in results}
    return {"results": str(out / report.RESULTS_JSON)}, summary


def run_sft(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    """The one call from the pipeline into the SFT trainer (issue 10 part A): train
    `inputs["model"]` on `inputs["data"]` with `stage.sft.recipe` and its overrides, save the
    result in `out / "model"`. Not wired yet: the trainer lands separately."""
    raise PipelineError(
        f"stage {stage.name!r}: the sft stage is not wired to the SFT trainer yet "
        "(reasonlab.pipeline.run_sft)"
    )


RUNNERS: dict[str, Callable[..., tuple[dict[str, str], dict[str, Any]]]] = {
    "pretrain": run_pretrain,
    "sample": run_sample,
    "rl": run_rl,
    "eval": run_eval,
    "sft": run_sft,
}


def load(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """A pipeline recipe, checked (ConfigError with file:line on a bad field)."""
    from reasonlab.config import load_config

    return load_config(PipelineConfig, path, overrides)


__all__ = [
    "EvalStage",
    "KINDS",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "SampleStage",
    "StageConfig",
    "TrainStage",
    "load",
    "run_sft",
]
