#!/usr/bin/env python3
"""Build the full UniProtKB/Swiss-Prot 2014_01 + GO table from Debian's metastudent-data.

Input: the output of
    blastdbcmd -db <dataset_201401>/<ONT>/goasp.fasta -entry all -outfmt '%t\t%s'
for ONT in MFO, BPO, CCO (one file each). Every line is `ACCESSION|GO:a,GO:b,...<TAB>SEQUENCE`.

Output: a gzip'd tab-separated table with header
    accession, length, go_mf, go_bp, go_cc, sequence
one row per accession in the union of the three databases, sorted by accession; each GO
list is the sorted, de-duplicated set of that ontology's terms joined by ';' (empty when the
protein is absent from that ontology's database). Sequences must agree where the databases
overlap; a disagreement is an error.

The gzip stream is written with mtime=0, no file name and compresslevel=9, so the same input
and the same zlib give the same bytes.

Usage: build_swissprot_2014.py MFO.tsv BPO.tsv CCO.tsv OUT.tsv.gz
Standard library only.
"""
import gzip
import os
import sys


def read_ontology(path, col, table):
    n = 0
    with open(path, "r", encoding="ascii") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                title, seq = line.split("\t")
                acc, gos = title.split("|", 1)
            except ValueError:
                sys.exit(f"{path}:{lineno}: unexpected line {line[:80]!r}")
            terms = sorted({t for t in gos.split(",") if t})
            row = table.get(acc)
            if row is None:
                row = table[acc] = [seq, None, None, None]
            elif row[0] != seq:
                sys.exit(f"{path}:{lineno}: sequence of {acc} differs between ontologies")
            if row[col] is not None:
                # the same accession twice in one database: merge the terms
                terms = sorted(set(terms) | set(row[col].split(";")) - {""})
            row[col] = ";".join(terms)
            n += 1
    return n


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__)
    mfo, bpo, cco, out = argv[1:]
    table = {}
    for col, path in ((1, mfo), (2, bpo), (3, cco)):
        n = read_ontology(path, col, table)
        print(f"  read {n} entries from {path}", file=sys.stderr)
    tmp = out + ".part"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(b"accession\tlength\tgo_mf\tgo_bp\tgo_cc\tsequence\n")
            for acc in sorted(table):
                seq, mf, bp, cc = table[acc]
                gz.write(f"{acc}\t{len(seq)}\t{mf or ''}\t{bp or ''}\t{cc or ''}\t{seq}\n".encode("ascii"))
    os.replace(tmp, out)
    print(f"  wrote {len(table)} proteins to {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
