"""The report as Markdown: tables with their notes and data links, images linked relatively."""
from __future__ import annotations

import os
from pathlib import Path


def _cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def table_markdown(t: dict, json_link: str | None = None) -> str:
    """One table (tables.py layout) as a Markdown table, its notes below, then its data link."""
    cols = t["columns"]
    lines = ["| " + " | ".join(_cell(c["header"]) for c in cols) + " |",
             "|" + "|".join("---:" if c["align"] == "r" else ":---" for c in cols) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t["cells"]]
    out = "\n".join(lines) + "\n"
    for n in t["notes"]:
        out += f"\n{n}\n"
    if json_link:
        out += f"\nData: [{json_link}]({json_link})\n"
    return out


def markdown_document(title: str, intro: str, sections: list[tuple], tables: dict[str, dict], links: dict[str, str],
                      out_dir: Path) -> str:
    """sections: (heading, table names, [(alt, image path)], caption or None); images are linked
    relative to out_dir, where report.md is written."""
    md = [f"# {title}\n", intro + "\n"]
    for head, table_names, images, caption in sections:
        md.append(f"\n## {head}\n")
        for alt, p in images:
            md.append(f"![{alt}]({os.path.relpath(p, out_dir).replace(os.sep, '/')})\n")
        if caption:
            md.append(f"\n{caption}\n")
        for n in table_names:
            t = tables[n]
            if len(table_names) > 1 or t["title"] != head:
                md.append(f"\n### {t['title']}\n")
            md.append("\n" + table_markdown(t, links[n]))
    return "\n".join(md)
