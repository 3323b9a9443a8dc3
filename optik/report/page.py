"""A self-contained HTML page: sections of text, tables and PNG figures embedded as data URIs.

No template engine, no script, no stylesheet or font from the network: the file opens offline, mails as one
attachment, and shows the same in ten years. Every string from a run (class names, paths, config values) is
escaped.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;
background:#fafafa;line-height:1.45}
header{background:#1f3b57;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:1.6em}
header p{margin:2px 0;opacity:.9}nav{padding:8px 32px;background:#e8eef4;position:sticky;top:0;z-index:1}
nav a{margin-right:14px;color:#1f3b57;text-decoration:none;font-weight:600}main{padding:8px 32px 40px;max-width:1200px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 20px 16px;margin:18px 0}
h2{border-bottom:2px solid #1f3b57;padding-bottom:4px}h3{margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f3f6}td:first-child,th:first-child{text-align:left}figure{margin:10px 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:6px 10px;margin:6px 0}.muted{color:#666;font-size:.9em}
code{background:#f0f0f0;padding:1px 4px;border-radius:3px}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("expected PNG bytes (they start with the PNG signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig, *, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


@dataclass
class Section:
    """One titled part of the page; ``parts`` are HTML fragments, added with the methods below."""

    title: str
    anchor: str
    parts: list[str] = field(default_factory=list)

    def text(self, text: str, *, cls: str | None = None) -> "Section":
        self.parts.append(f'<p{f" class={cls!r}" if cls else ""}>{esc(text)}</p>')
        return self

    def html(self, fragment: str) -> "Section":
        """A fragment built by the caller from escaped values."""
        self.parts.append(fragment)
        return self

    def heading(self, text: str) -> "Section":
        self.parts.append(f"<h3>{esc(text)}</h3>")
        return self

    def warnings(self, messages: Iterable[str]) -> "Section":
        self.parts += [f'<p class="warn">{esc(m)}</p>' for m in messages]
        return self

    def image(self, png: bytes | Path, *, alt: str, caption: str | None = None) -> "Section":
        data = png.read_bytes() if isinstance(png, Path) else png
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        self.parts.append(f'<figure><img src="{png_data_uri(data)}" alt="{esc(alt)}">{cap}</figure>')
        return self

    def table(self, header: Sequence[str], rows: Iterable[Sequence], *, caption: str | None = None) -> "Section":
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        cap = f"<caption class='muted'>{esc(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self


def render(title: str, subtitle: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole page as one string."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>'
                   for s in sections)
    sub = "".join(f"<p>{esc(line)}</p>" for line in subtitle)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1>{sub}</header><nav>{nav}</nav><main>{body}</main></body></html>")
