"""Errors that tell the user what was expected, what was received, and how to fix it."""
from __future__ import annotations


class OptikError(Exception):
    """Base class of every error optik raises on purpose; the CLI prints these without a traceback."""


class ConfigError(OptikError, ValueError):
    """A configuration key or value is unknown or out of range."""


class DataError(OptikError, ValueError):
    """A dataset, image or label is missing, unreadable or of the wrong shape."""


class CheckpointError(OptikError, ValueError):
    """Saved weights do not fit the model they are loaded into, or cannot be read safely."""


class RunError(OptikError, FileNotFoundError):
    """A run folder is missing, incomplete, or would be overwritten."""


class OfflineError(OptikError, ConnectionError):
    """Something had to be downloaded, and the network could not be reached."""


class OptikWarning(UserWarning):
    """Something optik accepted but a careful user would want to hear about (the CLI prints it as one line)."""


def short(value: object, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters with a note of the full length: an error names what it got
    without echoing a 50 MB value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def expect(condition: bool, what: str, got: object, fix: str = "", error: type[OptikError] = ConfigError) -> None:
    """Raise ``error`` unless ``condition``: ``"expected {what}, got {got!r}. {fix}"`` (``got`` shortened)."""
    if not condition:
        message = f"expected {what}, got {short(got)}"
        raise error(f"{message}. {fix}".strip() if fix else message)
