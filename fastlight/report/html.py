"""The report as one self-contained HTML page: inline CSS, images and GIFs as base64 data URIs."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from fastlight.errors import InputError

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; white-space: nowrap; }
th { background: #f1f1f1; } tbody tr:nth-child(even) { background: #fafafa; }
td.r, th.r { text-align: right; } td.l, th.l { text-align: left; }
p.note { font-size: 0.8em; color: #555; margin: 0.25em 0; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 3px; }
"""
MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def data_uri(path: str | Path) -> str:
    """The file as a base64 data URI (PNG, GIF or JPEG)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():  # the report embeds only files it wrote or copied itself
        raise InputError(f"report image {path} is not a regular file; re-run fastlight report")
    return f"data:{MIME[path.suffix.lower()]};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table_html(t: dict, json_link: str | None = None) -> str:
    """One table (tables.py layout) as an HTML table, its notes below, then its data link."""
    cols = t["columns"]
    head = "".join(f'<th class="{c["align"]}">{html.escape(c["header"])}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="{c["align"]}">{html.escape(str(v))}</td>' for c, v in zip(cols, row))
                   + "</tr>\n" for row in t["cells"])
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in t["notes"])
    link = f'<p class="note">Data: <a href="{html.escape(json_link)}">{html.escape(json_link)}</a></p>' if json_link else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>{notes}{link}\n"


def html_document(title: str, intro: str, sections: list[tuple], tables: dict[str, dict], links: dict[str, str]) -> str:
    """sections as in markdown.markdown_document; images are embedded."""
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for head, table_names, images, caption in sections:
        body.append(f"<h2>{html.escape(head)}</h2>")
        for alt, p in images:
            body.append(f'<p><img alt="{html.escape(alt)}" src="{data_uri(p)}"></p>')
        if caption:
            body.append(f'<p class="note">{html.escape(caption)}</p>')
        for n in table_names:
            t = tables[n]
            if len(table_names) > 1 or t["title"] != head:
                body.append(f"<h3>{html.escape(t['title'])}</h3>")
            body.append(table_html(t, links[n]))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escaped text with `code` spans (the only inline markup the run reports use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def markdown_page(title: str, lines: list[str], base: Path) -> str:
    """A report written as markdown lines (headings, pipe tables, `![alt](file)` images, paragraphs) as one
    self-contained HTML page: images relative to `base` embedded as data URIs."""
    body, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-", ":", " "}]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
            rest = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>\n" for r in cells[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>\n{rest}</tbody></table>")
            table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 3)
            body.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("![") and line.endswith(")") and "](" in line:
            alt, src = line[2:-1].split("](", 1)
            body.append(f'<p><img alt="{html.escape(alt)}" src="{data_uri(base / src)}"></p>')
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
