"""``python -m optik.serve RUN [RUN ...] [--host H] [--port N] [--open] [--max-upload-mb M]``."""
from __future__ import annotations

import argparse

from optik.core.flags import add_flags, call_args
from optik.serve import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m optik.serve", description="Serve the optik playground over "
                                     "classification runs (the same as `optik serve`).")
    add_flags(parser, serve, {"runs": {"nargs": "+", "help": "classification run folders"},
                              "host": "interface to bind (default: this machine only)", "port": {},
                              "open_browser": {"flag": "--open", "help": "open the page in the default browser"},
                              "max_upload_mb": {}}, skip=("top_k",))
    serve(**call_args(parser.parse_args(argv), serve))


if __name__ == "__main__":
    main()
