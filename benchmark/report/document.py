"""The report as a document: Markdown and HTML written in parallel, every text argument escaped.

``report.html`` is one self-contained file (figures embedded as data URIs, styles inline, no
scripts) under a Content-Security-Policy that forbids any outside resource; ``report.md`` links
its figures from ``figures/``. Every string handed to :class:`Document` is plain text from data,
configuration or the file system, so each method escapes it: HTML, and the Markdown that could
carry HTML, links or table breaks.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .. import store

# The page needs nothing from outside: images are data URIs, styles inline, no scripts at all.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.8em}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;vertical-align:bottom}td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}
figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:0.85em;color:#555}
.note{background:#fff8e1;padding:0.6em;border-left:4px solid #f0c000}.meta{color:#666;font-size:0.9em}
details{margin:0.6em 0}summary{cursor:pointer;color:#235}nav ol{columns:2;font-size:0.9em}
"""


def md_escape(text: str) -> str:
    """Markdown text from data: no HTML, no links, no table breaks."""
    text = html.escape(str(text), quote=False).replace("|", "\\|").replace("](", "]\\(")
    return re.sub(r"\s*\n\s*", " ", text)


def safe_file_part(text: str) -> str:
    """A file-name part from data: letters, digits and ``_.=-`` only, at most 80 characters."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text))[:80]


class Document:
    """Accumulates the report as Markdown and HTML in parallel; every text argument is plain text."""

    def __init__(self, title: str, out_dir: Path):
        self.title = title
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.md: list[str] = []
        self.html: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.figures: list[Path] = []

    def heading(self, text: str, level: int = 2) -> None:
        anchor = f"s{len(self.toc) + 1}-" + safe_file_part(text.lower())[:40]
        if level == 2:
            self.toc.append((anchor, text))
        self.md += [f"{'#' * level} {md_escape(text)}", ""]
        self.html.append(f'<h{level} id="{html.escape(anchor)}">{html.escape(text)}</h{level}>')

    def paragraph(self, text: str, css: str | None = None) -> None:
        self.md += [("> **Note:** " if css == "note" else "") + md_escape(text), ""]
        cls = f' class="{css}"' if css else ""
        self.html.append(f"<p{cls}>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.paragraph(text, "note")

    def table(self, header: list[str], rows: list[list[str]], collapsed: str | None = None) -> None:
        """A table; ``collapsed``: shown folded under that summary line (HTML) or after it in italics (Markdown)."""
        md_rows = ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in [header]]
        md_rows += ["|" + "---|" * len(header)] + ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
        self.md += ([f"*{md_escape(collapsed)}*", ""] if collapsed else []) + md_rows + [""]
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        table = f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        self.html.append(f"<details><summary>{html.escape(collapsed)}</summary>{table}</details>" if collapsed else table)

    def figure(self, path: Path, caption: str) -> None:
        """A PNG under figures/: linked from Markdown, embedded as a data URI in HTML."""
        self.figures.append(path)
        rel = path.relative_to(self.out_dir).as_posix()
        alt = md_escape(caption).replace("[", "\\[").replace("]", "\\]")
        self.md += [f"![{alt}]({rel})", "", f"*{md_escape(caption)}*", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, generated: str) -> list[Path]:
        """Write report.md and report.html (atomically); ``generated`` is the line under the title."""
        md_path, html_path = self.out_dir / "report.md", self.out_dir / "report.html"
        md = [f"# {md_escape(self.title)}", "", md_escape(generated), ""] + self.md
        store.atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")
        toc = "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in self.toc)
        page = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='meta'>{html.escape(generated)}</p>"
            f"<nav><ol>{toc}</ol></nav>" + "\n".join(self.html) + "</body></html>"
        )
        store.atomic_write_text(html_path, page)
        return [html_path, md_path]
