"""benchmarks/gpu_check.py at its CPU size: the script the GPU check runs is never untested."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_at_its_smallest_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
