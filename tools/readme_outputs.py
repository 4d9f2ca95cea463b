"""Regenerate (or check) the command outputs quoted in README.md between output markers.

A quoted output is a fenced ``text`` block between ``<!-- output: edgevid ARGS -->`` and ``<!-- /output -->``;
this script runs ``edgevid ARGS`` (``python -m edgevid``, 200 columns, no colour) and puts its first paragraph
(up to the first blank line or the end of the first table, trailing spaces removed) in the block. Only outputs
that do not depend on the machine or the clock are marked; tests/test_readme.py runs ``--check``.

Usage::

    .venv/bin/python tools/readme_outputs.py            # rewrite README.md
    .venv/bin/python tools/readme_outputs.py --check    # exit 1 and show the first stale block
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- output: (?P<command>edgevid[^>]*?) -->\n```text\n)(?P<body>.*?)(```\n<!-- /output -->)",
                   re.S)


def command_output(command: str) -> str:
    """The first paragraph ``command`` prints, as quoted in the README."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run([sys.executable, "-m", "edgevid", *shlex.split(command)[1:]], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=300, check=True)
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    ends = [i for i, line in enumerate(lines) if i and (not line or line.startswith("└"))]
    first = ends[0] + lines[ends[0]].startswith("└") if ends else len(lines)
    return "\n".join(lines[:first]).strip("\n") + "\n"


def regenerate(text: str) -> tuple[str, list[str]]:
    """``text`` with every marked block regenerated, and the commands whose block changed."""
    stale: list[str] = []

    def replace(match: re.Match) -> str:
        body = command_output(match["command"])
        if body != match["body"]:
            stale.append(match["command"])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", nargs="?", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        print(f"{args.readme}: no <!-- output: edgevid ... --> blocks", file=sys.stderr)
        return 1
    new, stale = regenerate(text)
    if args.check:
        for command in stale:
            print(f"{args.readme}: the quoted output of `{command}` is stale; run tools/readme_outputs.py",
                  file=sys.stderr)
        return 1 if stale else 0
    if stale:
        args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: {len(stale)} block(s) regenerated" if stale else f"{args.readme}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
