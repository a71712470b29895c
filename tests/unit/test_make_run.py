"""`make run` composes with KPOD_* like the agent does: it passes no --port flag unless
PORT is given, so KPOD_PORT=19191 make run serves on 19191 (flags beat the environment;
a default flag would have pinned 9090)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from kpodmetrics import config
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


def run_line(*make_args: str, env: dict[str, str]) -> str:
    require(shutil.which("make") is not None, "make is needed")
    out = subprocess.run(["make", "-n", "-s", "run", *make_args], cwd=REPO, text=True,
                         capture_output=True, check=True,
                         env={**os.environ, **env}).stdout
    (line,) = [ln for ln in out.splitlines() if "-m kpodmetrics run" in ln]
    return line


def test_kpod_port_reaches_the_agent() -> None:
    line = run_line(env={"KPOD_PORT": "19191"})
    assert "--port" not in line
    assert config.load({}, {"KPOD_PORT": "19191"}).port == 19191


def test_port_and_args_still_work() -> None:
    line = run_line("PORT=1234", "ARGS=--profile minimal", env={"KPOD_PORT": "19191"})
    assert line.split("kpodmetrics run", 1)[1].split() == ["--port", "1234", "--profile",
                                                           "minimal"]
