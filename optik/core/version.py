"""optik's version (pyproject.toml's): core, so that run provenance reads it without importing the API."""
__version__ = "0.1.0"
