"""benchmarks/gpu_check.py at its CPU size: the script the GPU check runs is never untested."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    """A fresh copy of the benchmark script as a module (a test may patch its functions)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_at_its_smallest_size(tmp_path, capsys):
    module = _load()
    out = tmp_path / "check.json"
    args = ["--small", "--prompts", "2", "--samples", "2", "--tokens", "8", "--json", str(out)]
    module.main([*args, "--threads", "1"])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    row = results["sizes"]["tiny"]
    for engine in ("engine", "generate"):
        assert 0 < row[engine]["tokens"] <= 2 * 2 * 8 and row[engine]["tokens_per_s"] > 0
    for key in ("grpo", "grpo_checkpointing"):
        step = row[key]
        assert step["generate_s"] > 0 and step["update_s"] > 0 and step["peak_gib"] > 0
        assert step["settings"]["parallel"] == "none"
    assert row["grpo_checkpointing"]["settings"]["gradient_checkpointing"] is True
    assert "generation tokens/s: reasonlab" in printed and "GRPO step" in printed
    # the engine comparison on a compute-dtype copy, and the Qwen2.5-0.5B recipe from a folder
    variants = results["variants"]
    for name in ("engine", "generate", "generate_static", "continuous_batching"):
        assert "error" not in variants[name], variants[name]
        assert 0 < variants[name]["tokens"] <= 2 * 2 * 8
    recipe = results["recipe"]
    assert "error" not in recipe, recipe.get("traceback")
    assert recipe["recipe"].endswith("r1_zero_qwen05b.yaml") and len(recipe["steps"]) == 2
    assert all(step["time/update"] > 0 for step in recipe["steps"])
    assert recipe["eval_accuracy"] is not None


def test_a_failing_part_is_reported_and_the_rest_still_runs(tmp_path, capsys):
    module = _load()

    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel")

    module.bench_generate = broken  # the baseline fails; the engine and the GRPO steps go on
    out = tmp_path / "check.json"
    args = ["--small", "--prompts", "2", "--samples", "2", "--tokens", "4", "--json", str(out)]
    steps = ["--checkpointing", "on", "--ab", "batching.share_prompts=false", "--profile"]
    module.main([*args, *steps, "--threads", "1", "--no-variants", "--recipe", ""])
    results = json.loads(out.read_text())
    row = results["sizes"]["tiny"]
    assert row["generate"]["error"] == "RuntimeError: no such kernel"
    assert row["engine"]["tokens"] > 0 and row["grpo_checkpointing"]["update_s"] > 0
    # the A/B step and the profiled step ran after it; the step without checkpointing did not
    assert "grpo" not in row
    assert row["grpo_ab0"]["settings"]["overrides"] == ["batching.share_prompts=false"]
    profile = row["grpo_profile"]["profile"]
    assert profile and all(op["self_ms"] >= 0 and op["calls"] > 0 for op in profile)
    assert any("mm" in op["name"] for op in profile)
    assert "[tiny] generate: FAILED" in capsys.readouterr().out
