"""`fastlight export`: argument parsing (filled in by the export work)."""
from __future__ import annotations


def add_parsers(sub) -> None:
    """Register this package's verbs on the `fastlight` sub-parser object."""
