"""``python -m optik.serve RUN [RUN ...] [--host H] [--port N] [--open] [--max-upload-mb M]``."""
from __future__ import annotations

import argparse

from optik.serve.uploads import MAX_UPLOAD_MB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m optik.serve", description="Serve the optik playground over "
                                     "classification runs (the same as `optik serve`).")
    parser.add_argument("runs", nargs="+", help="classification run folders")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB)
    args = parser.parse_args(argv)
    from optik.serve import serve

    serve(args.runs, host=args.host, port=args.port, open_browser=args.open, max_upload_mb=args.max_upload_mb)


if __name__ == "__main__":
    main()
