"""The SIGKILL switch of the resume tests (tests/test_resume.py, tests/test_sft_resume.py).

`launch(script, *args, kill="WHERE:N")` starts `script` in a fresh Python process with
REASONLAB_TEST_KILL=WHERE:N (and this folder on its path); the script calls `install(places)`
first, which wraps the function `places[WHERE]` names so that its N-th call SIGKILLs the process:
a kill at a chosen moment inside a step or a checkpoint write, with nothing cleaned up.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ENV = "REASONLAB_TEST_KILL"


def install(places: dict[str, tuple[str, str]]) -> None:
    """In the launched process: wrap `places[WHERE]` = (module, attribute) per REASONLAB_TEST_KILL."""
    if not os.environ.get(ENV):
        return
    where, nth = os.environ[ENV].split(":")
    if where not in places:
        raise SystemExit(f"{ENV}: unknown place {where!r}; valid: {', '.join(places)}")
    module_name, attribute = places[where]
    module = importlib.import_module(module_name)
    real = getattr(module, attribute)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(module, attribute, wrapped)


def launch(script: Path, *args: str, kill: str | None = None) -> subprocess.Popen:
    """Run `script` with `args` in a fresh single-threaded process (output piped, as text)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop(ENV, None)
    if kill:
        env[ENV] = kill
    here = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
