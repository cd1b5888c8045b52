"""`fastlight prune-decoder` / `fastlight distill-decoder`: argument parsing (filled in by the decoder work)."""
from __future__ import annotations


def add_parsers(sub) -> None:
    """Register this package's verbs on the `fastlight` sub-parser object."""
