"""The trainer's config: every recipe loads and validates, every field is documented, and a bad
value fails before any model loads with the field, the place it was set, and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonlab.cli import main
from reasonlab.config import ConfigError, load_config, undocumented_fields
from reasonlab.rl.config import TrainConfig, locate, validate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p for p in CONFIGS.glob("*.yaml") if not p.stem.startswith("sft_"))  # RL
TINY = [p for p in RECIPES if p.stem.endswith("_tiny")]


SIZED = {"r1_zero_qwen05b": "r1_zero"}
"""Recipes that size another one for a named model (issue 13's Qwen2.5-0.5B recipe); the recipe
they size has the tiny variant."""


def test_there_is_a_tiny_variant_of_every_recipe():
    names = {p.stem for p in RECIPES}
    assert {SIZED[n] for n in SIZED} <= names and set(SIZED) <= names
    full = {n for n in names if not n.endswith("_tiny")} - set(SIZED)
    assert {"tinyzero_countdown", "logic_rl_kk", "simplerl_zoo_math", "r1_zero"} <= full
    assert {f"{n}_tiny" for n in full} <= names


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    """A folder that passes validation's model.path check (config.json); nothing loads it."""
    folder = tmp_path_factory.mktemp("model")
    (folder / "config.json").write_text("{}")
    return f"model.path={folder}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_loads_and_validates(path, model_folder):
    tiny = path.stem.endswith("_tiny")
    overrides = [] if tiny else [model_folder]  # a full recipe's path is a placeholder
    config = validate(load_config(TrainConfig, path, overrides), source=str(path))
    if tiny:
        assert config.model.path == "tiny"
        full_path = CONFIGS / f"{path.stem[:-5]}.yaml"
        full = validate(load_config(TrainConfig, full_path, [model_folder]))
        # the tiny variant keeps the algorithm of the recipe it shrinks
        for section, key in [
            ("algorithm", "advantage"),
            ("algorithm", "loss_agg"),
            ("algorithm", "kl_estimator"),
            ("algorithm", "kl_in"),
            ("rewards", "scheme"),
            ("task", "name"),
            ("task", "template"),
        ]:
            assert getattr(getattr(config, section), key) == getattr(getattr(full, section), key)
    else:
        placeholder = load_config(TrainConfig, path)
        assert placeholder.model.path.startswith("/path/to/"), "a placeholder the user replaces"
        with pytest.raises(ConfigError, match="is not a folder") as err:
            validate(placeholder, source=str(path))
        assert err.value.field == "model.path" and err.value.where.startswith(f"{path}:")
        text = path.read_text()
        assert "http" in text or "arXiv" in text, "recipes cite their source"


def test_every_config_field_has_a_docstring():
    assert undocumented_fields(TrainConfig) == []


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


BASE = """\
task:
  name: countdown
rollout:
  n: 4
"""


@pytest.mark.parametrize(
    "extra, field, line, message",
    [
        ("batching:\n  minibatch_size: 7\n", "batching.minibatch_size", 6, "does not divide"),
        (
            "batching:\n  minibatch_size: 8\n  micro_batch_size: 3\n",
            "batching.micro_batch_size",
            7,
            "does not divide minibatch_size 8",
        ),
        ("algorithm:\n  advantage: gae\n  vf_coef: 0\n", "algorithm.vf_coef", 7, "value head"),
        ("algorithm:\n  advantage: grpoo\n", "algorithm.advantage", 6, "did you mean 'grpo'"),
        ("algorithm:\n  kl_in: rewards\n", "algorithm.kl_in", 6, "did you mean 'reward'"),
        (
            "algorithm:\n  ref_refresh_every: 400\n",
            "algorithm.ref_refresh_every",
            6,
            "no reference model",
        ),
        ("run:\n  eval_every: -1\n", "run.eval_every", 6, "must be >= 0"),
        (
            "rewards:\n  terms: [{name: cosine_lenght}]\n",
            "rewards.terms[0].name",
            6,
            "did you mean 'cosine_length'",
        ),
        ("optim:\n  schedule: cosin\n", "optim.schedule", 6, "did you mean 'cosine'"),
        (
            "algorithm:\n  kl_coef: 0.01\n  kl_estimator: k1\n",
            "algorithm.kl_estimator",
            7,
            "k1 as a loss (kl_in=loss) has zero expected gradient",
        ),
    ],
)
def test_cross_field_errors_name_the_field_and_its_line(tmp_path, extra, field, line, message):
    # the YAML has BASE (4 lines), then the extra section from line 5
    path = write(tmp_path, BASE + extra)
    config = load_config(TrainConfig, path)
    with pytest.raises(ConfigError) as err:
        validate(config, source=str(path))
    assert err.value.field == field
    assert err.value.where == f"{path}:{line}"
    assert message in str(err.value)


def test_k1_is_fine_in_the_reward_or_without_kl():
    for extra in (["algorithm.kl_in=reward", "algorithm.kl_coef=0.01"], ["algorithm.kl_coef=0"]):
        validate(load_config(TrainConfig, None, ["algorithm.kl_estimator=k1", *extra]))
    with pytest.raises(ConfigError, match="use k2 .*KL\\(policy \\|\\| ref\\)"):
        validate(
            load_config(TrainConfig, None, ["algorithm.kl_estimator=k1", "algorithm.kl_coef=1"])
        )


def test_group_estimators_need_a_group(tmp_path):
    path = write(tmp_path, "task: {name: countdown}\nrollout:\n  n: 1\n")
    with pytest.raises(ConfigError, match="grpo compares the responses of one prompt") as err:
        validate(load_config(TrainConfig, path), source=str(path))
    assert err.value.where == f"{path}:3"
    # REINFORCE++ has no group baseline: one response per prompt is fine
    validate(load_config(TrainConfig, path, ["algorithm.advantage=reinforce_pp"]))


def test_sampling_and_task_errors(tmp_path):
    with pytest.raises(ConfigError, match="temperature.*must be > 0 for RL"):
        validate(load_config(TrainConfig, None, ["rollout.temperature=0"]))
    with pytest.raises(ConfigError, match="did you mean 'countdown'"):
        validate(load_config(TrainConfig, None, ["task.name=countdwn"]))
    with pytest.raises(ConfigError, match="has no generator: set task.split"):
        validate(load_config(TrainConfig, None, ["task.name=math"]))
    with pytest.raises(ConfigError, match="no parameter 'num_people'"):
        validate(load_config(TrainConfig, None, ["task.params={num_people: 3}"]))
    with pytest.raises(ConfigError, match="file-backed split"):
        validate(load_config(TrainConfig, None, ["task.where={level: 3}"]))
    with pytest.raises(ConfigError, match="no reward"):
        validate(load_config(TrainConfig, None, ["rewards.scheme=null"]))


def test_data_parallel_needs_whole_groups_per_rank():
    config = load_config(TrainConfig, None, ["batching.prompts_per_step=4", "model.parallel=ddp"])
    validate(config, world_size=2)
    with pytest.raises(ConfigError, match="not divisible by the 3 data-parallel processes"):
        validate(config, world_size=3)


def test_parallel_settings_are_checked():
    """Several processes need a wrapper that reduces gradients; the values are named."""
    with pytest.raises(ConfigError, match="is none but 2 processes") as err:
        validate(load_config(TrainConfig, None, ["batching.prompts_per_step=4"]), world_size=2)
    assert err.value.field == "model.parallel"
    with pytest.raises(ConfigError, match="'zero3' is not one of: none, ddp, fsdp"):
        validate(load_config(TrainConfig, None, ["model.parallel=zero3"]))
    with pytest.raises(ConfigError, match="needs model.parallel=fsdp") as err:
        validate(load_config(TrainConfig, None, ["model.cpu_offload=true"]))
    assert err.value.field == "model.cpu_offload"


def test_errors_point_at_the_override_that_set_the_value(tmp_path):
    path = write(tmp_path, BASE)
    overrides = ["batching.minibatch_size=5"]
    with pytest.raises(ConfigError) as err:
        validate(load_config(TrainConfig, path, overrides), source=str(path), overrides=overrides)
    assert err.value.where == "override 'batching.minibatch_size=5'"
    assert locate("optim.lr", str(path)) == str(path)  # a default: the file, no line


def test_unknown_keys_are_caught_by_the_loader_with_the_nearest_name(tmp_path):
    path = write(tmp_path, BASE + "algorithm:\n  kl_coeff: 0.1\n")
    with pytest.raises(ConfigError, match="did you mean 'algorithm.kl_coef'") as err:
        load_config(TrainConfig, path)
    assert err.value.where == f"{path}:6"


def test_cli_reports_a_bad_recipe_without_a_traceback(tmp_path, capsys):
    path = write(tmp_path, BASE + "batching:\n  minibatch_size: 7\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: field 'batching.minibatch_size'" in err and "Traceback" not in err


def test_cli_check_prints_the_resolved_config(tmp_path, capsys, model_folder):
    argv = ["train", str(CONFIGS / "r1_zero.yaml"), model_folder, "optim.lr=1e-5", "--check"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    resolved = load_config(TrainConfig, write(tmp_path, out))
    assert resolved.optim.lr == 1e-5 and resolved.rollout.n == 16


@pytest.mark.parametrize(
    "value, problem",
    [("/nonexistent/model", "is not a folder"), ("{tmp}", "has no config.json")],
)
def test_model_path_is_checked_before_anything_loads(tmp_path, capsys, value, problem):
    """`--check` and a real run both stop at validation with one line naming the field, where it
    was set and the path: exit 2, no traceback."""
    value = value.format(tmp=tmp_path)
    recipe = str(CONFIGS / "tinyzero_countdown_tiny.yaml")
    for extra in (["--check"], [f"--out={tmp_path / 'run'}"]):
        assert main(["train", recipe, f"model.path={value}", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"reasonlab: error: override 'model.path={value}': field 'model.path'"
        )
        assert f"{value!r} {problem}" in err and "tiny" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("path", TINY, ids=lambda p: p.stem)
def test_tiny_recipes_run_through_the_cli(path, tmp_path):
    out = tmp_path / "run"
    args = ["train", str(path), "run.steps=2", "run.eval_every=2", "run.progress=false"]
    assert main([*args, f"--out={out}"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and "eval/accuracy" in rows[-1]
    assert (out / "checkpoints" / "step_000002" / "model" / "config.json").is_file()
    # running it again into the same folder is refused: --resume is the way to continue
    assert main([*args, f"--out={out}"]) == 2


def test_a_micro_batch_larger_than_the_minibatch_is_one_pass():
    """The demo recipe's micro_batch_size 32 stays valid when prompts_per_step is overridden
    smaller: the micro-batch is then the whole minibatch (one pass), not an error."""
    from reasonlab.config import load_config
    from reasonlab.demo import DEMO_RECIPE
    from reasonlab.rl.config import TrainConfig

    small = load_config(
        TrainConfig, str(DEMO_RECIPE), ["batching.prompts_per_step=2", "rollout.n=2"]
    )
    assert small.batching.micro_batch_size == 32 and small.micro_batch_size == 4
    demo = load_config(TrainConfig, str(DEMO_RECIPE), [])
    assert demo.minibatch_size == 128 and demo.micro_batch_size == 32
