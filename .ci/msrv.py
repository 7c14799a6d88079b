#!/usr/bin/env python3
"""Checks the declared MSRV against the locked dependency tree of the published crates.

This machine has one toolchain, so the MSRV cannot be proven by building with it. What can be
checked: no locked dependency of a published crate declares a `rust-version` above ours (clippy's
`incompatible_msrv` lint, which CI runs with -D warnings, covers our own use of the standard
library).
"""
import json
import subprocess
import sys
import tomllib

PUBLISHED = {"tasker-engine", "cargo-tasker", "tasker-macros", "tasker-rules"}


def version(text):
    return tuple(int(part) for part in text.split("."))


with open("Cargo.toml", "rb") as manifest:
    declared = tomllib.load(manifest)["workspace"]["package"]["rust-version"]
metadata = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
packages = {p["id"]: p for p in metadata["packages"]}
nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
stack = [p["id"] for p in metadata["packages"] if p["name"] in PUBLISHED]
seen = set()
while stack:
    node = stack.pop()
    if node in seen:
        continue
    seen.add(node)
    for dep in nodes[node]["deps"]:
        if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
            stack.append(dep["pkg"])
too_new = sorted(
    f"{packages[i]['name']} {packages[i]['version']} needs Rust {packages[i]['rust_version']}"
    for i in seen
    if packages[i].get("rust_version")
    and version(packages[i]["rust_version"])[:2] > version(declared)[:2]
)
if too_new:
    print(f"rust-version is {declared}, but the lock file holds:", *too_new, sep="\n  ")
    sys.exit(1)
print(f"MSRV {declared}: every locked dependency of the published crates accepts it ({len(seen)} crates)")
