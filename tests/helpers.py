"""Helpers for tests that run the real CLI: in this process (fast: torch and optik are imported once), or in a
subprocess through ``python -m optik`` (the entry point itself, or a run that must be killed or given an env)."""
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def optik_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "optik", *map(str, args)]


def run_optik(*args, check=True, timeout=600, env=None, isolated=False) -> subprocess.CompletedProcess:
    """``optik ARGS`` with its exit code, stdout and stderr. In-process through ``optik.cli.main`` unless
    ``isolated`` or ``env`` asks for a subprocess (each subprocess pays ~5 s of imports on 2 cores). ``timeout``
    bounds subprocesses only; an in-process run is bounded by pytest's own limits."""
    if isolated or env:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        env.pop("LOCAL_RANK", None)
        out = subprocess.run(optik_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    else:
        from optik.cli import main

        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse: --help (0) and usage errors (2)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = subprocess.CompletedProcess(["optik", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())
    if check and out.returncode != 0:
        raise AssertionError(f"optik {' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def start_training_until_checkpoint(*args, out: Path, poll: float = 0.05, timeout: float = 300
                                    ) -> subprocess.Popen:
    """``optik train ARGS --out OUT`` in a subprocess, returned (still running) once ``OUT/checkpoints/last.ckpt``
    exists, or once it has ended or ``timeout`` passed: what the kill-and-resume tests start from."""
    proc = subprocess.Popen(optik_cmd("train", *args, "--out", out), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last, deadline = Path(out) / "checkpoints" / "last.ckpt", time.time() + timeout
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(poll)
    return proc
