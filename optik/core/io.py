"""Atomic file writes and run folders: a crash never leaves a half-written file behind."""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from optik.core.errors import RunError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def new_run_dir(out: str | os.PathLike | None, *, prefix: str, root: str | os.PathLike = "runs",
                overwrite: bool = False) -> Path:
    """The folder a command writes into: ``out`` if given, else ``runs/<prefix>-<timestamp>``.

    An existing, non-empty folder is refused unless ``overwrite`` (the caller decides about resuming).
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(root) / f"{prefix}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path(root) / f"{prefix}-{stamp}-{n}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"expected --out to be a folder, got the file {str(out)!r}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunError(
                f"run folder {str(out)!r} already exists and is not empty; pass --overwrite to replace it, "
                f"--resume to continue it, or choose another --out"
            )
        shutil.rmtree(out)  # asked for: nothing stale (an old best.ckpt, old figures) may survive
    out.mkdir(parents=True, exist_ok=True)
    return out


def require_run_dir(run: str | os.PathLike, *needed: str) -> Path:
    """Check that ``run`` is a run folder holding ``needed`` files; raise a RunError naming what is missing."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"expected a run folder (made by `optik train`), got {str(run)!r}, which does not exist")
    missing = [n for n in needed if not (run / n).exists()]
    if missing:
        raise RunError(
            f"run folder {str(run)!r} lacks {', '.join(missing)}; was its training interrupted? "
            f"Continue it with `optik train --resume {run}`"
        )
    return run
