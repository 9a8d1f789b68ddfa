#!/usr/bin/env python3
"""Library functions longer than the house limit (100 lines, signature to closing brace).

Reads every `src/` file of the workspace (unit-test modules included: they are read like
the rest); `tests/`, `examples/` and `benches/` are not library code. Exit 1 and print each
function over the limit with its file, line and length.
Usage: scripts/check/fn_length.py [limit]   (default 100)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def blank_literals(line):
    """The line without comments, string literals and char literals (braces inside them)."""
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(?:\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def long_functions(path, limit):
    """(name, first line, length) of each function in `path` longer than `limit` lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for start, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            code = blank_literals(lines[end])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body (trait method)
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                length = end - start + 1
                if length > limit:
                    found.append((m.group(6), start + 1, length))
                break
    return found


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    sources = [p for p in ROOT.glob("**/src/**/*.rs") if "target" not in p.parts]
    over = []
    for path in sorted(sources):
        for name, line, length in long_functions(path, limit):
            over.append(f"{path.relative_to(ROOT)}:{line}: fn {name} is {length} lines")
    for entry in over:
        print(entry)
    if over:
        print(f"{len(over)} function(s) over {limit} lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
