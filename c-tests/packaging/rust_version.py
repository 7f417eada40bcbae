#!/usr/bin/env python3
"""Every workspace member's rust-version must be what its locked dependency
tree needs: the largest rust-version among the packages it builds with
(dependencies, build dependencies, its own dev-dependencies, for this
machine's target), from `cargo metadata --locked`. Computed, so a new
dependency is covered the day it is locked. Prints one line per member and
exits 1 on any mismatch, naming the value to write."""
import json
import subprocess
import sys


def key(v):
    """"1.85" and "1.85.0" are the same version."""
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    host = next(l.split()[1] for l in subprocess.run(["rustc", "-vV"], capture_output=True, text=True,
                                                      check=True).stdout.splitlines() if l.startswith("host:"))
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", host],
        capture_output=True, text=True, check=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    deps = {n["id"]: [d["pkg"] for d in n["deps"]] for n in meta["resolve"]["nodes"]}
    bad = 0
    for member in meta["workspace_members"]:
        seen, todo = set(), list(deps.get(member, []))
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo.extend(deps.get(d, []))
        need = max((packages[d].get("rust_version") or "0" for d in seen), key=key, default="0")
        who = sorted(packages[d]["name"] for d in seen if key(packages[d].get("rust_version") or "0") == key(need))
        have = packages[member].get("rust_version")
        p = packages[member]
        where = p["manifest_path"]
        if have is None or key(have) != key(need):
            bad = 1
            print(f"{p['name']}: rust-version is {have}, the locked tree needs {need} ({', '.join(who)}): "
                  f"write rust-version = \"{need}\" in {where}")
        else:
            print(f"{p['name']}: rust-version {have} = what the locked tree needs ({', '.join(who)})")
    return bad


sys.exit(main())
