#!/usr/bin/env python3
"""Which data files the notebooks read, whether the resolver will find them, and fetch what is missing.

    python3 scripts/notebook_data.py [--fetch] [NOTEBOOK ...]

The notebooks read their data through `resolve(files::NAME)` or `resolve_first(&[files::A, ...])`; the paths come from
src/data/resolver.rs, so a new notebook or file needs no change here. `resolve_first(&[A, B])` needs
any one of A, B (the first that is fetched: the list's last entry, the cheapest). A file counts as
present where the library looks for it: $PROTEIN_LM_DATA, ../shared/datasets beside the checkout, the
user data directory (${XDG_DATA_HOME:-~/.local/share}/protein-lm/datasets).

Without --fetch: lists the files and exits 2 if any is missing. With --fetch: runs datasets/fetch.sh for
the data sets of the missing files (into $PROTEIN_LM_DATA, else the user data directory; its per-step
lines and curl's progress are shown), then checks again and exits 1 naming every file still missing, so
a notebook never starts without its data. Standard library only.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOLVER = os.path.join(REPO, "src", "data", "resolver.rs")


def known_files():
    """NAME -> relative path, from the `files` module of resolver.rs."""
    text = open(RESOLVER, encoding="utf-8").read()
    out = dict(re.findall(r'pub const ([A-Z0-9_]+): &str = "([^"]+)";', text))
    if not out:
        sys.exit(f"{RESOLVER}: found no `pub const NAME: &str = \"...\";` in the files module")
    return out


def code_of(nb_path):
    try:
        nb = json.load(open(nb_path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        sys.exit(f"{nb_path}: cannot read the notebook: {e}")
    return "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code")


def needs(notebooks, files):
    """[(notebook, [alternative relative paths])]: each entry needs one of its alternatives."""
    out = []
    for nb in notebooks:
        code = code_of(nb)
        spans = []
        for m in re.finditer(r"resolve_first\(\s*&\[([^\]]*)\]", code):
            names = re.findall(r"files::([A-Z0-9_]+)", m.group(1))
            spans.append(m.span())
            out.append((nb, names))
        # Only what is resolved is read: a name compared with a path (`ends_with(files::X)`) is not.
        for m in re.finditer(r"resolve\(\s*files::([A-Z0-9_]+)", code):
            if not any(a <= m.start() < b for a, b in spans):
                out.append((nb, [m.group(1)]))
    resolved = []
    for nb, names in out:
        unknown = [n for n in names if n not in files]
        if unknown:
            sys.exit(f"{nb}: files::{unknown[0]} is not a constant of {RESOLVER}")
        resolved.append((nb, [files[n] for n in names]))
    return resolved


def roots():
    user = os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"),
                        "protein-lm", "datasets")
    env = os.environ.get("PROTEIN_LM_DATA")
    return [r for r in (env, os.path.join(REPO, "..", "shared", "datasets"), user) if r], (env or user)


def where(rel, data_roots):
    for r in data_roots:
        if os.path.isfile(os.path.join(r, rel)):
            return os.path.join(r, rel)
    return None


def dataset_of(rel):
    parts = rel.split("/")
    return "/".join(parts[:2]) if parts[0] == "ppi" else parts[0]


def report(entries, data_roots):
    missing = []
    seen = set()
    for nb, alts in entries:
        key = (tuple(alts))
        found = next((p for p in (where(a, data_roots) for a in alts) if p), None)
        if key not in seen:
            seen.add(key)
            label = " or ".join(alts)
            print(f"  {'ok     ' if found else 'MISSING'} {label}" + (f"  ({found})" if found else ""))
        if not found:
            missing.append((nb, alts))
    return missing


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetch", action="store_true", help="run datasets/fetch.sh for what is missing")
    ap.add_argument("notebooks", nargs="*")
    args = ap.parse_args()
    notebooks = args.notebooks or sorted(
        glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")) + glob.glob(os.path.join(REPO, "notebooks", "*", "*.ipynb"))
    )
    entries = needs(notebooks, known_files())
    data_roots, dest = roots()
    print(f"data the notebooks read (looked in: {', '.join(data_roots)}):")
    missing = report(entries, data_roots)
    if not missing:
        return 0
    if not args.fetch:
        return 2
    # The last alternative of resolve_first is the cheap one (the sample, not the full table).
    sets = []
    for _, alts in missing:
        ds = dataset_of(alts[-1])
        if ds not in sets:
            sets.append(ds)
    cmd = ["bash", os.path.join(REPO, "datasets", "fetch.sh"), "--dest", dest] + sets
    print(f"fetching {', '.join(sets)} into {dest}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd, stdin=subprocess.DEVNULL)
    print(f"fetch finished in {time.time() - t0:.0f} s (exit status {rc})")
    data_roots, _ = roots()
    still = report(entries, data_roots)
    if still:
        print("\nERROR: the notebooks cannot run; still missing after the fetch:", file=sys.stderr)
        for nb, alts in still:
            print(f"  {' or '.join(alts)} (read by {os.path.relpath(nb, REPO)}; data set {dataset_of(alts[-1])})",
                  file=sys.stderr)
        print("See the fetch's ERROR lines above; datasets/README.md says what each fetch needs "
              "(network to deb.debian.org / GitHub, blastdbcmd), or set PROTEIN_LM_MIRROR.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
