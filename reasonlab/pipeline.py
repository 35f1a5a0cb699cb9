"""Pipelines: stages (pretrain | cot | sft | sample | rl | eval) run in order, each feeding the next.

    reasonlab pipeline configs/pipelines/r1_tiny.yaml [key=value ...]

A recipe (`PipelineConfig`) lists stages by name. Each stage writes into `out_dir/<name>/` and
names what it produced in `out_dir/<name>/done.json`:

| kind | reads | writes (`outputs`) |
|---|---|---|
| `pretrain` | `pretrain:` (`reasonlab.models.base_model.PretrainSettings`) | `model` (a Hugging Face folder) |
| `cot` | `cot:` (`CotStage`) | `data` (chains of thought written by program, `reasonlab.tasks.cot`) |
| `sample` | `model`, `sample:` (`SampleStage`) | `data` (rejection-sampled JSONL, `reasonlab.sft.sample`) |
| `sft` | `model`, `data`, `sft:` (a `reasonlab sft` recipe and overrides) | `model` |
| `rl` | `model` (optional), `rl:` (a `reasonlab train` recipe and overrides) | `model` (the final policy), `run` |
| `eval` | `model`, `eval:` (`EvalStage`) | `results` (results.json of `reasonlab eval`) |

A stage's `model` and `data` name an earlier stage (its output is used) or a path. A stage whose
`done.json` exists is not run again (its settings must be unchanged: a changed stage is an error
that says how to re-run it, `--from NAME`, which removes that stage's folder and every later
one's and runs them from scratch); an interrupted pipeline starts again at the first
stage without one, and that stage resumes what it can: sampling and evaluation from their stored
generations, RL and SFT from their newest checkpoints (when their recipes save them:
`run.save_every`, `run.save_steps`), pretraining and CoT writing from scratch.

A sample stage that keeps fewer rows than its `sample.min_rows` (a weak policy's rejection
sampling) stops the pipeline after it, not with an error: `Pipeline.stopped` (and the CLI) say
which stage kept how many of how many samples and what would keep more; the stage stays finished,
so a rerun with a lower `min_rows` goes on from there.

Under torchrun (`torchrun --nproc_per_node N -m reasonlab pipeline RECIPE.yaml parallel=ddp`)
every process runs the pipeline with its `Dist` (`Pipeline(dist=)`):

- pretrain, sft and rl stages train data parallel: pretrain stages with the recipe's `parallel`
  (ddp or fsdp; `pretrain.batch_size` is the global batch), sft and rl stages with their
  recipe's `model.parallel`, which the pipeline's `parallel` (when not none) sets before the
  stage's overrides. `check_ranks` refuses a training stage left at none, or a batch that does
  not split, before the first stage runs. Rank 0 saves the models.
- sample and eval stages split their fixed generation batches over the ranks
  (`reasonlab.eval.runner.generate_sharded`, each batch with the seed one process gives it, so
  the stored generations are one process's); rank 0 then scores, selects and writes.
- cot stages run on rank 0 alone.
- Rank 0 reads each `done.json` and shares what it read, so every rank skips, resumes or runs a
  stage alike; after a stage, rank 0's outputs and summary are shared with every rank (which
  waits for all of them to finish it), rank 0 writes `done.json`, and no rank starts the next
  stage before it is written.

The seed papers' pipelines are recipes in `configs/pipelines/` (r1, r1_distill, sky_t1,
demystify; a `_tiny` CPU variant of each).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from reasonlab.io import atomic_write_text
from reasonlab.models.base_model import PretrainSettings

if TYPE_CHECKING:
    from reasonlab.parallel import Dist

KINDS = ("pretrain", "cot", "sft", "sample", "rl", "eval")
DONE = "done.json"
MODEL_KINDS = ("pretrain", "sft", "rl")
"""Stage kinds whose output is a model."""
DATA_KINDS = ("cot", "sample")
"""Stage kinds whose output is SFT data."""


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
    data: str | None = None
    """File-backed tasks: a shipped split or a JSONL file of problems (None: generated)."""
    problems: int | None = 100
    """How many problems (None: every problem of `data` in the share)."""
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
    min_rows: int = 1
    """Fewest kept rows the stages after this one can use: when fewer are kept, the pipeline
    stops after this stage with a message naming it and the counts (its samples are kept; the
    stage is finished, so a rerun with a lower min_rows goes on without sampling again)."""


@dataclass
class CotStage:
    """Chains of thought written by program (`reasonlab cot`, `reasonlab.tasks.cot.cot_rows`)."""

    kind: str = "long"
    """short, long (constructed long CoT), all_behaviours, backtracking_only, no_behaviours,
    empty_cot or wrong_answers (`reasonlab.tasks.cot.KINDS`)."""
    n: int = 1000
    """Rows to write."""
    problems: int | None = None
    """Distinct training problems (None: n); rows cycle over them."""
    task: str = "countdown"
    """Task with a CoT generator (`reasonlab.tasks.cot.TASKS`)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Task generator parameters (three numbers always)."""
    held_out_fraction: float = 0.2
    """Share of the problem space held out for evaluation; no row comes from it."""
    seed: int = 0
    """Seed of the problems and the texts (the same seed gives every kind the same problems)."""
    template: str = "r1-zero"
    """Prompt template: r1-zero or qwen-instruct."""


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
    kind: Literal["pretrain", "cot", "sft", "sample", "rl", "eval"]
    """What the stage does."""
    model: str | None = None
    """The model it starts from: an earlier stage's name (pretrain, sft or rl) or a folder."""
    data: str | None = None
    """sft: its training data, a sample or cot stage's name or a JSONL path."""
    pretrain: PretrainSettings | None = None
    """pretrain: the base model's settings (`reasonlab pretrain`)."""
    cot: CotStage | None = None
    """cot: the kind of chain of thought, how many rows, the problems."""
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
            "cot": CotStage,
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
        if self.kind in ("pretrain", "cot") and (self.model or self.data):
            raise ValueError(
                f"stage {self.name!r} ({self.kind}) starts from nothing: remove its model/data"
            )
        if self.kind == "cot":
            from reasonlab.tasks.cot import KINDS as COT_KINDS
            from reasonlab.tasks.cot import TASKS as COT_TASKS

            cot = self.settings()
            if cot.kind not in COT_KINDS:
                raise ValueError(
                    f"stage {self.name!r}: cot.kind {cot.kind!r} is unknown; valid: "
                    f"{', '.join(COT_KINDS)}"
                )
            if cot.task not in COT_TASKS:
                raise ValueError(
                    f"stage {self.name!r}: cot.task {cot.task!r} has no CoT generator; valid: "
                    f"{', '.join(COT_TASKS)}"
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
    parallel: str = "none"
    """The training stages' data-parallel engine under torchrun, ddp or fsdp
    (`reasonlab.parallel`): pretrain stages train with it; sft and rl stages get it as
    `model.parallel`, after their recipe and before their own overrides (so a stage may set its
    own). none: one process (sft and rl stages keep their recipes' model.parallel). Not part of
    any stage's fingerprint: N processes train the model one process trains."""

    def validate(self) -> None:
        from reasonlab.parallel import PARALLEL

        if self.parallel not in PARALLEL:
            raise ValueError(f"parallel: {self.parallel!r} is not one of: {', '.join(PARALLEL)}")
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        seen: dict[str, str] = {}
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}")
            if not stage.name or "/" in stage.name or stage.name.startswith("."):
                raise ValueError(f"stage name {stage.name!r} must be a plain folder name")
            for what, wanted in (("model", MODEL_KINDS), ("data", DATA_KINDS)):
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
    settings = dataclasses.asdict(stage)
    if settings.get("sample"):  # a threshold on the output, not a setting that makes it
        settings["sample"].pop("min_rows", None)
    blob = json.dumps({"stage": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Pipeline:
    """Runs a `PipelineConfig` (see the module docstring). `base` is the folder stage recipes and
    relative paths are resolved against (the pipeline recipe's folder), after the working
    directory."""

    def __init__(
        self,
        config: PipelineConfig,
        base: Path | None = None,
        log: Callable[[str], None] = print,
        dist: Dist | None = None,
    ):
        from reasonlab.parallel import Dist

        self.dist = dist or Dist.single()
        """This process's place in a torchrun group (see the module docstring)."""
        self.config, self.base = config, base
        self.log = log if self.dist.is_main else (lambda message: None)  # rank 0 says it
        self.out = Path(config.out_dir)
        self.outputs: dict[str, dict[str, str]] = {}
        self.stopped: str | None = None
        """Why the last run stopped before the last stage (a stage yielded too little data),
        else None."""

    def stage_dir(self, stage: StageConfig) -> Path:
        return self.out / stage.name

    def restart_from(self, name: str) -> None:
        """Run `name` and every later stage again from scratch: their folders are removed, since
        an earlier stage's new model may sit at the same path as the old one (a checkpoint or
        stored generations of the old model must not be resumed)."""
        names = [s.name for s in self.config.stages]
        if name not in names:
            raise PipelineError(f"no stage {name!r}; stages: {', '.join(names)}")
        if self.dist.is_main:
            for stage in self.config.stages[names.index(name) :]:
                shutil.rmtree(self.stage_dir(stage), ignore_errors=True)
        self.dist.barrier()  # no rank looks at a stage folder before it is gone

    def run(self) -> dict[str, dict[str, str]]:
        """Run every unfinished stage in order; returns each stage's outputs."""
        from reasonlab.threads import intra_op_threads

        self.check_ranks()
        with intra_op_threads(self.config.num_threads):
            return self._run()

    def check_ranks(self) -> None:
        """Under torchrun (more than one process), before any stage runs: every training stage
        must be data parallel (the pipeline's `parallel` for pretrain stages, the recipe's
        model.parallel for sft and rl stages) and a pretrain stage's batch must split evenly
        over the processes; PipelineError names the stage and the setting."""
        from reasonlab.models.pretrain import check_data_parallel

        world = self.dist.world_size
        if world == 1:
            return
        for stage in self.config.stages:
            try:
                if stage.kind == "pretrain":
                    fields = ("parallel", f"stage {stage.name!r}: pretrain.batch_size")
                    batch = stage.settings().batch_size
                    check_data_parallel(self.config.parallel, batch, world, fields)
                elif (
                    stage.kind in ("sft", "rl")
                    and stage_recipe(self, stage, []).model.parallel == "none"
                ):
                    raise ValueError(
                        f"its recipe's model.parallel is none but {world} processes were "
                        "launched (torchrun): set the pipeline's parallel (parallel=ddp) or the "
                        f"stage's model.parallel (in {stage.kind}.overrides) to ddp or fsdp"
                    )
            except ValueError as err:
                raise PipelineError(
                    f"stage {stage.name!r} ({stage.kind}) under {world} processes: {err}"
                ) from None

    def shared(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a collective under torchrun: every rank calls it, in
        step; a stage runner uses it for what rank 0 decides from the files, e.g. a resume)."""
        return self.dist.all_gather_objects(value if self.dist.is_main else None)[0]

    def _run(self) -> dict[str, dict[str, str]]:
        self.stopped = None
        for i, stage in enumerate(self.config.stages, start=1):
            inputs = self._inputs(stage)
            done = self.stage_dir(stage) / DONE
            digest = fingerprint(stage, inputs)
            header = f"[{i}/{len(self.config.stages)}] {stage.name} ({stage.kind})"
            # rank 0's reading of done.json decides for every rank: all skip or all run
            record = self.shared(json.loads(done.read_text()) if done.is_file() else None)
            if record is not None:
                if record.get("fingerprint") != digest:
                    raise PipelineError(
                        f"stage {stage.name!r} finished with other settings or inputs than the "
                        f"recipe's now ({done}); re-run it and the stages after it with --from "
                        f"{stage.name}, or use another out_dir"
                    )
                self.log(f"{header}: done earlier, outputs {record['outputs']}")
                self.outputs[stage.name] = record["outputs"]
                if self._stop_after(stage, record["summary"], i):
                    return self.outputs
                continue
            self.log(f"{header}: running")
            start = time.perf_counter()
            result: tuple[dict[str, str], dict[str, Any]] | None = None
            if self.dist.is_main or stage.kind not in ONE_RANK:
                result = RUNNERS[stage.kind](self, stage, inputs, self.stage_dir(stage))
            # every rank has finished the stage; rank 0's outputs and summary hold for all
            outputs, summary = self.shared(result)
            record = {
                "stage": stage.name,
                "kind": stage.kind,
                "inputs": inputs,
                "outputs": outputs,
                "summary": summary,
                "seconds": round(time.perf_counter() - start, 3),
                "fingerprint": digest,
            }
            if self.dist.is_main:
                atomic_write_text(done, json.dumps(record, indent=2, default=str) + "\n")
            self.dist.barrier()  # no rank goes on before done.json is written
            self.outputs[stage.name] = outputs
            self.log(f"{header}: done in {record['seconds']:.0f}s, outputs {outputs}")
            if self._stop_after(stage, summary, i):
                return self.outputs
        return self.outputs

    def _stop_after(self, stage: StageConfig, summary: dict[str, Any], position: int) -> bool:
        """True (and `self.stopped` says why) when a sample stage kept fewer rows than its
        `min_rows` and stages follow it: an SFT on a handful of rows is no result."""
        if stage.kind != "sample" or position == len(self.config.stages):
            return False
        cfg: SampleStage = stage.settings()
        kept = summary.get("kept", 0)
        if kept >= cfg.min_rows:
            return False
        later = [s.name for s in self.config.stages[position:]]
        self.stopped = (
            f"stage {stage.name!r} kept {kept} of {summary.get('samples', '?')} samples "
            f"({summary.get('problems_kept', '?')} of {summary.get('problems', '?')} problems; "
            f"pass@{summary.get('n', '?')} {summary.get('pass_at_n', float('nan')):.3f}), fewer "
            f"than its sample.min_rows={cfg.min_rows}: stopped before {', '.join(later)}. "
            f"A stronger model (more training before {stage.model!r}), more problems or samples "
            f"(sample.problems, sample.n) keep more; or lower sample.min_rows and run again"
        )
        self.log(f"pipeline stopped: {self.stopped}")
        return True

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
        parallel=pipe.config.parallel,
        dist=pipe.dist,
    )
    summary = {"final_loss": record["train"].get("final_loss"), "corpus": record["corpus"]}
    return {"model": str(out / "model")}, summary


def _engine(model_dir: str, cfg: SampleStage | EvalStage) -> tuple[Any, Any, Any]:
    """The Hugging Face rollout engine on `model_dir`, its tokenizer, and `cfg`'s sampling."""
    from reasonlab import models
    from reasonlab.rollout import get_engine
    from reasonlab.rollout.base import SamplingParams

    # on the GPU when there is one (under torchrun this rank's, set by Dist.from_env)
    model, tokenizer = models.load(model_dir, device=str(models.resolve_device("auto")))
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
    from reasonlab.eval.runner import generate_sharded
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
        data=cfg.data,
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
    if pipe.dist.is_main:
        try:
            sampler.store.open(settings)
        except SettingsMismatch:  # left by an earlier version of this stage (`--from`): obsolete
            pipe.log(f"{stage.name}: replacing generations made with other settings")
            sampler.store.open(settings, overwrite=True)
    if pipe.dist.enabled:  # each rank samples its share of the batches; rank 0 selects
        generate_sharded(
            engine,
            task,
            examples,
            params,
            store=sampler.store,
            settings=settings,
            dist=pipe.dist,
            template=cfg.template,
            tokenizer=tokenizer,
            batch_size=cfg.batch_size,
        )
        if not pipe.dist.is_main:
            return {}, {}
    summary = sampler.run(engine, examples, params, tokenizer=tokenizer, batch_size=cfg.batch_size)
    pipe.log(
        f"kept {summary.kept}/{summary.samples} samples; pass@{summary.n} {summary.pass_at_n:.3f}"
    )
    result = summary.to_dict()
    result.pop("settings")
    return {"data": str(data)}, result


def stage_recipe(pipe: Pipeline, stage: StageConfig, extra: list[str]) -> Any:
    """An rl or sft stage's recipe (`TrainConfig`, `SFTConfig`) with the pipeline's `parallel`
    (when not none, as model.parallel), the stage's overrides, then `extra` (what the pipeline
    sets: model.path, data, run.out_dir), checked before any model is loaded; ConfigError names
    file:line or the override."""
    from reasonlab.config import load_config
    from reasonlab.rl.config import TrainConfig
    from reasonlab.sft.config import SFTConfig

    cfg: TrainStage = stage.settings()
    recipe = pipe.path(cfg.recipe, what=f"stage {stage.name!r} {stage.kind}.recipe")
    cls = {"rl": TrainConfig, "sft": SFTConfig}[stage.kind]
    parallel = pipe.config.parallel
    overrides = [*([f"model.parallel={parallel}"] if parallel != "none" else []), *cfg.overrides]
    overrides += extra
    config = load_config(cls, recipe, overrides)
    if stage.kind == "rl":  # names (rewards, estimators, tasks) against their registries
        from reasonlab.rl.config import validate

        validate(config, pipe.dist.world_size, source=str(recipe), overrides=overrides)
    return config


def run_rl(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    from reasonlab import models
    from reasonlab.parallel import full_state_dict, is_sharded
    from reasonlab.rl.trainer import Trainer

    run_dir = out / "run"
    extra = [f"run.out_dir={json.dumps(str(run_dir))}"]
    if "model" in inputs:
        extra.append(f"model.path={json.dumps(inputs['model'])}")
    config = stage_recipe(pipe, stage, extra)
    # an interrupted stage continues from its newest checkpoint (or starts over without one)
    resume = pipe.shared((run_dir / "metrics.jsonl").exists())
    trainer = Trainer(config, resume=resume, dist=pipe.dist)
    result = trainer.train()
    model = trainer.model
    full = full_state_dict(model, rank0_only=True) if is_sharded(model) else None  # collective
    if not pipe.dist.is_main:
        return {}, {}
    models.save(model, trainer.tokenizer, out / "model", full)
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
    from reasonlab.eval.runner import evaluate, generate_sharded
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
        if pipe.dist.is_main:
            try:
                store.open(settings)
            except SettingsMismatch:  # left by an earlier version of this stage (`--from`)
                pipe.log(f"{stage.name}: replacing {bench.name} generations with other settings")
                store.open(settings, overwrite=True)
        examples = bench.load(limit=cfg.limit, task=task)
        if pipe.dist.enabled:  # each rank samples its share of the batches; rank 0 scores
            generate_sharded(
                engine,
                task,
                examples,
                params,
                store=store,
                settings=settings,
                dist=pipe.dist,
                template=template,
                tokenizer=tokenizer,
                batch_size=cfg.batch_size,
            )
            if not pipe.dist.is_main:
                continue
        result = evaluate(
            engine,
            task,
            examples,
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
    if not pipe.dist.is_main:
        return {}, {}
    report.write_results(out, results)
    summary = {r.benchmark: {k: v for k, v in r.metrics.items() if "@" in k} for r in results}
    return {"results": str(out / report.RESULTS_JSON)}, summary


def run_cot(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    """Chains of thought written by program (`reasonlab.tasks.cot.cot_rows`) into
    `out / "cot.jsonl"`: the data of a cold start from constructed long CoT."""
    from reasonlab.io import write_jsonl
    from reasonlab.tasks.cot import cot_rows

    cfg: CotStage = stage.settings()
    try:
        rows = cot_rows(
            cfg.kind,
            cfg.n,
            task_name=cfg.task,
            problems=cfg.problems,
            seed=cfg.seed,
            params=cfg.params,
            held_out_fraction=cfg.held_out_fraction,
            template=cfg.template,
        )
    except ValueError as err:
        raise PipelineError(f"stage {stage.name!r}: {err}") from None
    data = out / "cot.jsonl"
    write_jsonl(data, rows)
    summary = {
        "rows": len(rows),
        "problems": len({r["key"] for r in rows}),
        "correct": sum(r["correct"] for r in rows) / len(rows),
    }
    pipe.log(f"wrote {len(rows)} {cfg.kind} chains of thought to {data}")
    return {"data": str(data)}, summary


def run_sft(
    pipe: Pipeline, stage: StageConfig, inputs: dict[str, str], out: Path
) -> tuple[dict[str, str], dict[str, Any]]:
    """The one call from the pipeline into the SFT trainer: train `inputs["model"]` on
    `inputs["data"]` with `stage.sft.recipe` and its overrides (the pipeline sets model.path,
    data.train_files and run.out_dir = `out / "run"`). An interrupted stage continues from the
    newest checkpoint of its run (the recipe's `run.save_steps`), or starts over without one or
    when the run was made with other settings (`--from` after a change).
    The trained model is the run's Hugging Face folder, `out / "run" / "model"`."""
    from reasonlab.config import config_to_yaml
    from reasonlab.sft.trainer import SFTError, SFTTrainer

    run_dir = out / "run"
    extra = [
        f"model.path={json.dumps(inputs['model'])}",
        f"data.train_files={json.dumps([inputs['data']])}",
        f"run.out_dir={json.dumps(str(run_dir))}",
    ]
    config = stage_recipe(pipe, stage, extra)
    resume = False
    if pipe.dist.is_main and (run_dir / "metrics.jsonl").exists():
        resume = True
        if (run_dir / "config.yaml").read_text() != config_to_yaml(config):
            # left by an earlier version of this stage (`--from` after a change): obsolete
            pipe.log(f"{stage.name}: starting over: {run_dir} was trained with other settings")
            shutil.rmtree(run_dir)
            resume = False
    resume = pipe.shared(resume)  # rank 0 decided (and removed an obsolete run) for all
    try:
        result = SFTTrainer(config, resume=resume, log=pipe.log, dist=pipe.dist).train()
    except SFTError as err:
        raise PipelineError(f"stage {stage.name!r}: {err}") from None
    if not pipe.dist.is_main:
        return {}, {}
    summary = {
        "steps": result["steps"],
        "final": result["final"],
        "eval": result["eval"],
        "before": result["before"],
        "data": result["data"],
    }
    return {"model": result["model"], "run": str(run_dir)}, summary


ONE_RANK = ("cot",)
"""Stage kinds that run on rank 0 alone under torchrun (the other ranks wait for them)."""


RUNNERS: dict[str, Callable[..., tuple[dict[str, str], dict[str, Any]]]] = {
    "pretrain": run_pretrain,
    "cot": run_cot,
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
    "CotStage",
    "EvalStage",
    "KINDS",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "SampleStage",
    "StageConfig",
    "TrainStage",
    "load",
    "run_cot",
    "run_sft",
    "stage_recipe",
]
