"""Atomic file writes and run folders: a crash never leaves a half-written file behind."""
from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from optik.core.errors import ConfigError, RunError


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


RUN_MARKER = "config.yaml"  # every run folder optik makes starts with it (written before anything else)
LOCK_FILE = ".optik.lock"


def is_run_dir(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a run folder optik made: its ``config.yaml`` is a mapping that names the optik command
    and version that wrote it."""
    marker = Path(folder) / RUN_MARKER
    if not marker.is_file() or marker.stat().st_size > 1_000_000:
        return False
    try:
        saved = yaml.safe_load(marker.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(saved, dict) and "command" in saved and "optik" in saved


def describe_contents(folder: str | os.PathLike, *, limit: int = 5) -> str:
    """``"notes.txt, data/ and 3 more"``: what a folder holds, for an error message."""
    entries = sorted((e for e in Path(folder).iterdir() if e.name != LOCK_FILE), key=lambda e: e.name)
    names = [e.name + ("/" if e.is_dir() else "") for e in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(names) + more if names else "nothing"


def new_run_dir(out: str | os.PathLike | None, *, prefix: str, root: str | os.PathLike = "runs",
                overwrite: bool = False, protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """The folder a command writes into: ``out`` if given, else ``runs/<prefix>-<timestamp>``.

    An existing, non-empty folder is refused unless ``overwrite``; and even then only a run folder optik made (see
    :func:`is_run_dir`), that no process is training into (:class:`RunLock`), and that contains none of the
    ``protect`` paths (the data it is about to train on). The caller decides about resuming.
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
        raise RunError(f"expected --out to be a folder, got {str(out)!r}, which {path_kind(out)}")
    if out.exists() and any(e.name != LOCK_FILE for e in out.iterdir()):  # a stale lock alone: an empty folder
        RunLock(out).check()
        if not overwrite:
            raise RunError(
                f"run folder {str(out)!r} already exists and is not empty; pass --overwrite to replace it, "
                f"--resume to continue it, or choose another --out"
            )
        if not is_run_dir(out):
            raise RunError(f"--overwrite replaces only a run folder optik made (one with optik's {RUN_MARKER}); "
                           f"{str(out)!r} is not one: it holds {describe_contents(out)}. Choose another --out, or "
                           f"move its contents away yourself")
        for path in protect:
            if Path(path).exists() and Path(path).resolve().is_relative_to(out.resolve()):
                raise RunError(f"--overwrite would delete {str(out)!r}, which contains the data {str(path)!r}; "
                               f"choose another --out")
        shutil.rmtree(out)  # asked for: nothing stale (an old best.ckpt, old figures) may survive
    out.mkdir(parents=True, exist_ok=True)
    return out


def path_kind(path: str | os.PathLike) -> str:
    """What is at ``path``, as a phrase: "does not exist", "is a broken symbolic link to ...", "is a FIFO (a
    named pipe)", "is a folder", "is a file", ..."""
    import stat

    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            return f"is a broken symbolic link (to {os.readlink(path)!r})"
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    for test, what in ((stat.S_ISDIR, "is a folder"), (stat.S_ISREG, "is a file"),
                       (stat.S_ISFIFO, "is a FIFO (a named pipe), not a file"),
                       (stat.S_ISCHR, "is a character device, not a file"),
                       (stat.S_ISBLK, "is a block device, not a file"), (stat.S_ISSOCK, "is a socket, not a file")):
        if test(mode):
            return what
    return "is not a regular file"


class RunLock:
    """An exclusive claim on a run folder while a process trains into it: ``.optik.lock``, created atomically
    (``O_CREAT | O_EXCL``) and holding the owner's PID, host and start time.

    A second process fails at once with a message naming the owner. The lock is released when the owner
    finishes (or exits); one left behind by a process that is gone (killed) is stale and is taken over. On
    another host the owner cannot be checked, so its lock is respected until removed by hand.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.held = False

    def owner(self) -> dict | None:
        """The live owner's record, or None (no lock, or a stale one)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            # unreadable: being written this instant (a live claim), or left by a process killed mid-write
            try:
                fresh = time.time() - self.path.stat().st_mtime < 10
            except FileNotFoundError:
                return None
            return {"pid": "(starting)", "host": socket.gethostname(), "started": "just now"} if fresh else None
        if info.get("host") == socket.gethostname() and not _process_alive(info["pid"]):
            return None
        return info

    def check(self) -> None:
        """Raise a RunError if another live process holds the folder."""
        info = self.owner()
        if info is not None and not (info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()):
            raise RunError(
                f"run folder {str(self.folder)!r} is in use by process {info['pid']} on {info.get('host', '?')} "
                f"(since {info.get('started', '?')}); wait for it to finish or choose another --out. If that "
                f"process is gone, delete {str(self.path)!r}"
            )

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.check()  # a live owner: refused
                self.path.unlink(missing_ok=True)  # a stale lock: taken over
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(record)
            self.held = True
            atexit.register(self.release)
            return self
        self.check()
        raise RunError(f"could not lock run folder {str(self.folder)!r}: {str(self.path)!r} keeps reappearing")

    def release(self) -> None:
        if self.held:
            self.held = False
            info = self.owner()
            if info is not None and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def input_paths(cfg) -> tuple[str, ...]:
    """The paths a run reads (its data, its starting weights): ``--overwrite`` never deletes a folder holding one."""
    return tuple(p for p in (cfg.data, getattr(cfg, "weights", None)) if p and Path(p).exists())


RESUME_FROM = ("last", "best")  # the checkpoints --resume may continue from


def resume_checkpoint(run: Path, resume_from: str = "last") -> Path:
    """The checkpoint ``--resume`` continues from, or a RunError saying which is missing and what can be done."""
    if resume_from not in RESUME_FROM:
        raise ConfigError(f"expected --resume-from last or best, got {resume_from!r}")
    folder = run / "checkpoints"
    checkpoint = folder / f"{resume_from}.ckpt"
    if checkpoint.is_file():
        return checkpoint
    if resume_from == "last" and (folder / "best.ckpt").is_file():
        hint = (f"{folder / 'best.ckpt'} exists: --resume-from best continues from the best validation epoch "
                f"instead (the epochs after it are trained again)")
    else:
        hint = (f"its training stopped before an epoch was saved; train it again with `optik train --config "
                f"{run / RUN_MARKER} --out {run} --overwrite`")
    raise RunError(f"cannot resume {str(run)!r}: {checkpoint} does not exist; {hint}")


def provenance() -> dict:
    """What made a run: versions of optik, torch, Lightning and Python, the git commit, the time (UTC)."""
    import platform

    import lightning
    import torch

    from optik.core.version import __version__

    return {"optik": __version__, "torch": str(torch.__version__), "lightning": str(lightning.__version__),
            "python": platform.python_version(), "git_sha": _git_sha(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def _git_sha() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def require_run_dir(run: str | os.PathLike, *needed: str) -> Path:
    """Check that ``run`` is a run folder holding ``needed`` files; raise a RunError naming what is missing and
    what can actually be done about it."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"expected a run folder (made by `optik train`), got {str(run)!r}, which {path_kind(run)}")
    missing = [n for n in needed if not (run / n).exists()]
    if not missing:
        return run
    if RUN_MARKER in missing:
        raise RunError(f"{str(run)!r} is not a run folder optik made: it has no {RUN_MARKER} (it holds "
                       f"{describe_contents(run)}); pass the folder `optik train --out` wrote, or train a new run")
    if (run / "checkpoints" / "last.ckpt").is_file():
        hint = f"its training was interrupted; continue it with `optik train --resume {run}`"
    else:
        hint = (f"its training stopped before the first checkpoint, so it cannot be resumed; train it again with "
                f"`optik train --config {run / RUN_MARKER} --out {run} --overwrite`")
    raise RunError(f"run folder {str(run)!r} lacks {', '.join(missing)}: {hint}")
