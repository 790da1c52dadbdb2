#!/usr/bin/env python3
"""Compare two `sprint reproduce` output folders stage by stage.

    tools/reproduce-diff.py OUT_A OUT_B

Each stage's cached result (OUT/.cache/STAGE-KEY.json) is compared after removing what a
behaviour-preserving change may alter: wall times and rates (keys naming seconds, wall,
elapsed, per-second rates, the checksum), the stage cache key and the binary's sha256
(`key`, `inputs.tool_sha256`), and the output folders and cache keys inside strings
(times written in text, "N s", are normalised too). Prints one line per stage and exits 1
when any stage differs or is missing on one side. Artefacts (traces, thresholds, weights)
are compared by the stages' results that name them; compare their bytes with `cmp` when the
file names matter.
"""
import glob
import json
import os
import re
import sys

IGNORED_KEY = re.compile(r"seconds|wall|elapsed|checksum|per_s|per_second|_s$|^key$|tool_sha256")


def stages(out):
    found = {}
    for path in glob.glob(os.path.join(out, ".cache", "*.json")):
        m = re.match(r"(.*)-([0-9a-f]{16})\.json$", os.path.basename(path))
        if m:
            found[m.group(1)] = (path, m.group(2))
    return found


def normalise(x, outs, keys):
    if isinstance(x, dict):
        return {k: normalise(v, outs, keys) for k, v in x.items() if not IGNORED_KEY.search(k)}
    if isinstance(x, list):
        return [normalise(v, outs, keys) for v in x]
    if isinstance(x, str):
        for o in outs:
            x = x.replace(o, "OUT")
        for k in keys:
            x = x.replace(k, "KEY")
        return re.sub(r"\d+(\.\d+)? s\b", "N s", x)
    return x


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a, b = (os.path.abspath(p) for p in sys.argv[1:])
    sa, sb = stages(a), stages(b)
    if not sa or not sb:
        print(f"no cached stages under {a if not sa else b}/.cache", file=sys.stderr)
        return 2
    all_keys = [k for _, k in sa.values()] + [k for _, k in sb.values()]
    same_all = True
    for name in sorted(set(sa) | set(sb)):
        if name not in sa or name not in sb:
            print(f"{name:45s} missing in {'the first' if name not in sa else 'the second'}")
            same_all = False
            continue
        ja = normalise(json.load(open(sa[name][0])), (a, b), all_keys)
        jb = normalise(json.load(open(sb[name][0])), (a, b), all_keys)
        same = ja == jb
        same_all &= same
        print(f"{name:45s} {'identical' if same else 'DIFFERS'}")
    print("every stage identical" if same_all else "stages differ")
    return 0 if same_all else 1


if __name__ == "__main__":
    sys.exit(main())
