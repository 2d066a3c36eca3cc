#!/usr/bin/env python3
"""Small PPI file conversions used by datasets/fetch.sh (standard library only).

fasta2tsv IN.fasta OUT.tsv
    one 'id<TAB>sequence' line per FASTA record, in file order (hiphq_dict.fasta -> hippie_hq_dict.tsv).
pan-fill PAIRS.tsv SUB.fasta FULL_TABLE.tsv.gz OUT.fasta
    the ids of PAIRS (columns 1 and 2) that SUB.fasta lacks and the Swiss-Prot 2014 full table has,
    sorted, each as '>id' and its sequence on one line (pan2010_fill_from_swissprot2014.fasta).
Both were checked against the shared files (same bytes).
"""
import gzip
import os
import sys


def read_fasta(path):
    recs, name, buf = [], None, []
    with open(path, encoding="ascii") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    recs.append((name, "".join(buf)))
                name, buf = line[1:].split()[0], []
            elif line:
                buf.append(line)
    if name is not None:
        recs.append((name, "".join(buf)))
    return recs


def atomic_write(path, text):
    with open(path + ".part", "w", encoding="ascii") as fh:
        fh.write(text)
    os.replace(path + ".part", path)
    print(f"  wrote {path}")


def main(argv):
    if len(argv) == 4 and argv[1] == "fasta2tsv":
        atomic_write(argv[3], "".join(f"{n}\t{s}\n" for n, s in read_fasta(argv[2])))
    elif len(argv) == 6 and argv[1] == "pan-fill":
        pairs, sub, full, out = argv[2:]
        have = {n for n, _ in read_fasta(sub)}
        ids = set()
        with open(pairs, encoding="ascii") as fh:
            for line in fh:
                p = line.rstrip("\n").split("\t")
                if len(p) >= 2:
                    ids.update(p[:2])
        need = ids - have
        seqs = {}
        with gzip.open(full, "rt", encoding="ascii") as fh:
            next(fh)
            for line in fh:
                acc, rest = line.split("\t", 1)
                if acc in need:
                    seqs[acc] = rest.rstrip("\n").rsplit("\t", 1)[1]
        atomic_write(out, "".join(f">{a}\n{seqs[a]}\n" for a in sorted(seqs)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
