"""`fastlight <verb>`: the dispatch. Each verb's arguments and handler live in its module of
`fastlight.commands`; the work lives in the components they call."""
from __future__ import annotations

import argparse
import os
import sys

from fastlight.commands import (analyze, bench, decoder, demo, evaluate, evaluate_teacher, export, fvd, info, plan,
                                preprocess, pretrain, prune, report, run, sample, synthesize, train, vbench)
from fastlight.commands.options import OneLineParser
from fastlight.errors import FastlightError, UsageError

# the command modules, in the order `fastlight --help` lists their verbs
COMMANDS = (pretrain, sample, info, demo, analyze, plan, evaluate, vbench, fvd, report, preprocess, synthesize, train,
            bench, prune, evaluate_teacher, export, decoder, run)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="fastlight", description="Distil a video DiT's steps and size together.")
    sub = p.add_subparsers(dest="verb", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A FastlightError (bad input, a refused state) is one line on stderr and exit 2;
    Ctrl-C is exit 130; any other exception is a bug and propagates with its traceback."""
    if not sys.stdout.isatty():  # logs and pipes: give rich tables room instead of 80 columns
        os.environ.setdefault("COLUMNS", "160")
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:  # one line, like any bad input (argparse's own would print its usage block)
        print(f"{e}", file=sys.stderr)
        return 2
    try:
        args.fn(args)
    except FastlightError as e:
        print(f"fastlight {args.verb}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastlight {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0


def _one_line(e: FastlightError) -> str:
    """The message on one line (a message that wraps a library's text may hold newlines)."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
