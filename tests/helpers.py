"""Helpers for tests that run the real CLI in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def optik_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "optik", *map(str, args)]


def run_optik(*args, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("LOCAL_RANK", None)
    out = subprocess.run(optik_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and out.returncode != 0:
        raise AssertionError(f"optik {' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out
