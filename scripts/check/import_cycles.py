#!/usr/bin/env python3
"""Import circles between the files of each crate in the workspace.

A file uses another when it names a path into that file's module: `crate::a::b`,
`super::x`, `self::x`, or a child module (`use child::Item`, `child::f()`). A circle is
a set of files that reach each other that way (a parent declaring `mod child` is not a
use). Exit 1 and print each circle when there is one.
Usage: scripts/check/import_cycles.py [crate dir...]   (default: every crate)
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def strip(text):
    """Source without comments, strings and `#[cfg(test)] mod tests { ... }` blocks."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def modules(src):
    """Module path (tuple) -> file, for one crate's src dir."""
    found = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("").parts
        if rel in (("lib",), ("main",)):
            path = ()
        elif rel[-1] == "mod":
            path = rel[:-1]
        else:
            path = rel
        if rel[0] == "bin" or path and path[0] == "bin":
            continue
        found.setdefault(path, f)
    return found


def expand(use):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    use = re.sub(r"\s+", "", use)
    m = re.search(r"\{", use)
    if not m:
        return [use]
    depth, end = 0, None
    for k in range(m.start(), len(use)):
        depth += {"{": 1, "}": -1}.get(use[k], 0)
        if depth == 0:
            end = k
            break
    if end is None:
        return [use[: m.start()]]
    head, inner, tail = use[: m.start()], use[m.start() + 1 : end], use[end + 1 :]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    return [p for part in parts if part for p in expand(head + part + tail)]


def reexports(mods):
    """Module -> {name: absolute path} of its `pub use` items (a facade's re-exports)."""
    out = {}
    for here, f in mods.items():
        names = {}
        for u in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", strip(f.read_text())):
            for p in expand(u.group(1)):
                alias = p.split(" as ")
                segs = [x for x in alias[0].split("::") if x]
                if not segs or segs[-1] == "*":
                    continue
                name = alias[1].strip() if len(alias) > 1 else segs[-1]
                names[name] = absolute(segs, here, mods)
        out[here] = names
    return out


def absolute(segs, here, mods):
    """A path as a tuple from the crate root, or None when it leaves the crate."""
    if segs[0] == "crate":
        return tuple(segs[1:])
    if segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        return base + tuple(segs)
    if here + (segs[0],) in mods:
        return here + tuple(segs)
    return None


def resolve(path, here, mods, reexp=None, depth=0):
    """The file a path names (longest module prefix, through re-exports), or None."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = here
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif here + (segs[0],) in mods:
        base = here
    else:
        return None
    return follow(base + tuple(segs), mods, reexp or {}, depth)


def follow(full, mods, reexp, depth):
    for n in range(len(full), -1, -1):
        if full[:n] in mods:
            rest = full[n:]
            target = reexp.get(full[:n], {}).get(rest[0]) if rest else None
            if target is not None and depth < 8:
                return follow(target + rest[1:], mods, reexp, depth + 1)
            return full[:n]
    return None


def edges(mods):
    graph = {m: set() for m in mods}
    reexp = reexports(mods)
    for here, f in mods.items():
        text = strip(f.read_text())
        paths = []
        for u in re.finditer(r"\buse\s+([^;]+);", text):
            paths += expand(u.group(1).split(" as ")[0])
        for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text):
            paths.append(m.group(1))
        for m in re.finditer(r"(?<![:\w])(\w+)::\w", text):
            if here + (m.group(1),) in mods:
                paths.append(m.group(0)[:-1] + "x")
        for p in paths:
            target = resolve(p.split(" as ")[0], here, mods, reexp)
            if target is not None and target != here:
                graph[here].add(target)
    return graph


def cycles(graph):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    dirs = [Path(d).resolve() for d in sys.argv[1:]] or [ROOT] + sorted((ROOT / "crates").iterdir())
    bad = 0
    for d in dirs:
        src = d / "src"
        if not src.is_dir():
            continue
        mods = modules(src)
        graph = edges(mods)
        for comp in cycles(graph):
            bad += 1
            names = sorted(str(mods[m].relative_to(ROOT)) for m in comp)
            print("import circle: " + " <-> ".join(names))
            for m in sorted(comp):
                uses = sorted(str(mods[t].relative_to(src)) for t in graph[m] if t in comp)
                print(f"  {mods[m].relative_to(src)} uses {', '.join(uses)}")
    if bad:
        print(f"{bad} import circle(s)")
        return 1
    print("no import circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
