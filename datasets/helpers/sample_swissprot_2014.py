#!/usr/bin/env python3
"""Draw the 50,000-protein sample of the full Swiss-Prot 2014 table (the tiny/demo-scale corpus).

Rule (it reproduces the shared swissprot_201401_go_sample50k.tsv.gz byte for byte, checked):
  1. read the full table made by build_swissprot_2014.py (header + rows sorted by accession);
  2. pick = random.Random(0).sample(range(number of rows), 50000)  (Python's Mersenne Twister,
     stable across CPython 3 releases for sample() on a range);
  3. write the header and the picked rows in table order (i.e. sorted by accession);
  4. gzip level 9 through a text stream, whose close adds a sync flush before the end of the
     stream, with the member name and mtime of the original draw
     (swissprot_201401_go_sample50k.tsv, 1795310117), so the bytes equal the copy every test and
     notebook number was computed on. Same zlib (1.2.x) gives the same bytes.

Usage: sample_swissprot_2014.py FULL.tsv.gz OUT.tsv.gz [N SEED]
Standard library only.
"""
import gzip
import io
import os
import random
import sys

HEADER = b"accession\tlength\tgo_mf\tgo_bp\tgo_cc\tsequence\n"
MEMBER_NAME = "swissprot_201401_go_sample50k.tsv"
MEMBER_MTIME = 1795310117


def main(argv):
    if len(argv) not in (3, 5):
        sys.exit(__doc__)
    full, out = argv[1], argv[2]
    n, seed = (int(argv[3]), int(argv[4])) if len(argv) == 5 else (50000, 0)
    with gzip.open(full, "rb") as fh:
        header = fh.readline()
        if header != HEADER:
            sys.exit(f"{full}:1: unexpected header {header[:80]!r} (expected {HEADER!r})")
        rows = fh.readlines()
    for i, row in enumerate(rows, 2):
        if not row.endswith(b"\n") or row.count(b"\t") != 5:
            sys.exit(f"{full}:{i}: expected 6 tab-separated fields, got {row[:80]!r}")
    if len(rows) < n:
        sys.exit(f"{full}: {len(rows)} rows, fewer than the {n} to draw")
    pick = sorted(random.Random(seed).sample(range(len(rows)), n))
    tmp = out + ".part"
    with open(tmp, "wb") as raw:
        gz = gzip.GzipFile(filename=MEMBER_NAME, mode="wb", fileobj=raw, compresslevel=9, mtime=MEMBER_MTIME)
        text = io.TextIOWrapper(gz, encoding="ascii", newline="")
        text.write(header.decode("ascii"))
        text.write(b"".join(rows[i] for i in pick).decode("ascii"))
        text.close()
    os.replace(tmp, out)
    print(f"  drew {n} of {len(rows)} proteins (random.Random({seed})) into {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
