"""The report as a page: `report.md` (figures linked) and one self-contained `report.html` (figures
embedded as data URIs, so the page needs no other file when it is sent by e-mail)."""

from __future__ import annotations

import base64
import html as html_lib
import re
from pathlib import Path
from typing import Sequence

from rescale4dl_bmz.files.text_files import write_text

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:60rem;margin:2em auto;
padding:0 1em;line-height:1.45;color:#1d2530}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #dde;padding-bottom:.2em;
margin-top:1.8em}
table{border-collapse:collapse;font-size:13px;display:block;overflow-x:auto;max-width:100%;margin:.6em 0}
td,th{border:1px solid #ccd;padding:4px 8px;white-space:nowrap;text-align:right}
th{background:#f2f4f8;text-align:center}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
code{background:#f2f4f8;padding:0 .25em;border-radius:3px;font-size:.92em;word-break:break-all}
.failures{border:2px solid #c1121f;background:#fff3f3;padding:.2em 1em;border-radius:6px}
.failures h2{color:#c1121f;border:none}
.lead{font-size:1.15em;background:#eef7ee;border-left:5px solid #2a9d8f;padding:.6em 1em}
"""


def embed_images(html: str, base: Path) -> str:
    """Replace every `src="relative/file.png"` by a base64 data URI of that file (self-contained page)."""
    def repl(m: re.Match) -> str:
        src = html_lib.unescape(m.group(2))
        if re.match(r"^(data:|https?:)", src):
            return m.group(0)
        data = base64.b64encode((base / src).read_bytes()).decode("ascii")
        mime = "image/svg+xml" if src.endswith(".svg") else "image/jpeg" if src.endswith((".jpg", ".jpeg")) \
            else "image/png"
        return f'{m.group(1)}"data:{mime};base64,{data}"'

    return re.sub(r'(<img[^>]*?\ssrc=)"([^"]+)"', repl, html)


def image_data_uri(path: str | Path) -> str:
    """A PNG file as a data URI (for Prefect artifacts, which cannot reach local files)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def markdown_to_html(md: str) -> str:
    """Markdown to HTML with tables (the `markdown` package; a <pre> block without it)."""
    try:
        import markdown

        return markdown.markdown(md, extensions=["tables", "md_in_html"])
    except ImportError:  # pragma: no cover - markdown ships with tensorboard
        return "<pre>" + html_lib.escape(md) + "</pre>"


def write_report(out: str | Path, sections: Sequence[tuple[str, str]], title: str = "rescale4dl sweep report",
                 lead: str = "") -> tuple[Path, Path]:
    """Write `report.md` (figures linked) and a self-contained `report.html` (figures embedded) from
    (heading, markdown body) sections. A heading starting with '!' marks a warning box (failures)."""
    out = Path(out)
    parts, html_parts = [f"# {title}\n"], [f"<h1>{html_lib.escape(title)}</h1>"]
    if lead:
        parts.append(lead + "\n")
        html_parts.append(f"<div class='lead'>{markdown_to_html(lead)}</div>")
    for heading, body in sections:
        warn = heading.startswith("!")
        heading = heading.lstrip("!")
        parts.append(f"## {heading}\n\n{body}\n")
        block = f"<h2>{html_lib.escape(heading)}</h2>\n{markdown_to_html(body)}"
        html_parts.append(f"<div class='failures'>{block}</div>" if warn else block)
    md = "\n".join(parts)
    write_text(out / "report.md", md)
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html_lib.escape(title)}</title><style>{CSS}</style></head><body>"
            + embed_images("\n".join(html_parts), out) + "</body></html>\n")
    write_text(out / "report.html", page)
    return out / "report.md", out / "report.html"

