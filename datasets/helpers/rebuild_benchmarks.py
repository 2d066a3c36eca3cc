#!/usr/bin/env python3
"""Rebuild the four ProteinBERT benchmark files whose upstream copies live in Git LFS (stdlib only).

UNTESTED AGAINST UPSTREAM: GitHub was unreachable when this was written, so the input formats below
are taken from the upstream READMEs and from the rebuilt files in the shared data. The output is not
expected to equal the shared files byte for byte (row order, for one, is not known); the manifest marks
these files reproducible_from_upstream = false and fetch.sh does not check their sha256.

fluorescence AVGFP_TSV VALID_CSV OUT_DIR
    AVGFP_TSV: gitter-lab/metl-pub @ 40d8fbf9 data/dms_data/avgfp/avgfp.tsv (tab-separated, header with
    at least `variant` (e.g. "S64T,Y145F", wild type "_wt" or empty), `num_mutations` and `score`).
    VALID_CSV: protein_bert's fluorescence.valid.csv (TAPE). The wild type is the per-position majority
    of the 237-residue validation sequences (TAPE's avGFP without the initial Met); the variant
    numbering offset is found by matching the wild-type residues. label = score + 3.719212 ("%.6f").
    train = variants with 0..3 mutations whose sequence is not in the validation set; test = 4 or more.
    Variants with a stop codon ("*") are dropped. Writes fluorescence.{train,test}.csv (seq,label).

secondary_structure SPLITS_ZIP VALID_CSV TEST_CSV OUT_DIR
    SPLITS_ZIP: J-SNACKKB/FLIP @ 62cace87 splits/secondary_structure/splits.zip, holding
    sequences.fasta and sampled.fasta (">ID SET=train VALIDATION=False" then an H/E/C string).
    train = SET=train records whose sequence is in neither TAPE's valid nor test file; H/E/C -> 0/1/2.
    The disorder label (1 = resolved) needs a resolved mask: taken from a RESOLVED=... attribute or a
    *resolved*.fasta member of the zip if present; otherwise disorder_secondary_structure.train.csv is
    not written and the command exits with status 3 after writing secondary_structure.train.csv.
"""
import collections
import csv
import io
import os
import sys
import zipfile

OFFSET = 3.719212


def write_csv(path, header, rows):
    tmp = path + ".part"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
    print(f"  wrote {path} ({len(rows)} rows)")


def fluorescence(avgfp, valid_csv, out):
    with open(valid_csv, newline="") as fh:
        valid = [r["seq"] for r in csv.DictReader(fh)]
    L = collections.Counter(map(len, valid)).most_common(1)[0][0]
    cols = [collections.Counter() for _ in range(L)]
    for s in valid:
        if len(s) == L:
            for i, c in enumerate(s):
                cols[i][c] += 1
    wt = "".join(c.most_common(1)[0][0] for c in cols)
    with open(avgfp, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or not {"variant", "num_mutations", "score"} <= set(rows[0]):
        sys.exit(f"{avgfp}: expected columns variant, num_mutations, score; got {list(rows[0]) if rows else 'nothing'}")

    def muts(v):
        v = (v or "").strip()
        if v in ("", "_wt", "WT", "wt"):
            return []
        return [(m[0], int(m[1:-1]), m[-1]) for m in v.split(",")]

    parsed = [(muts(r["variant"]), int(r["num_mutations"]), float(r["score"])) for r in rows]
    offset = None
    for o in (0, 1, -1, 2):
        if all(0 <= p - o < L and wt[p - o] == a for ms, _, _ in parsed for a, p, _ in ms):
            offset = o
            break
    if offset is None:
        sys.exit("fluorescence: no numbering offset makes the variants agree with the wild type")
    print(f"  wild type {len(wt)} aa, variant numbering offset {offset}")
    vset = set(valid)
    train, test = [], []
    for ms, n, score in parsed:
        if any(b == "*" for _, _, b in ms):
            continue
        s = list(wt)
        for _, p, b in ms:
            s[p - offset] = b
        s = "".join(s)
        row = (s, "%.6f" % (score + OFFSET))
        if n <= 3:
            if s not in vset:
                train.append(row)
        else:
            test.append(row)
    write_csv(os.path.join(out, "fluorescence.train.csv"), ("seq", "label"), train)
    write_csv(os.path.join(out, "fluorescence.test.csv"), ("seq", "label"), test)


def read_fasta(text):
    recs, name, buf = [], None, []
    for line in text.splitlines():
        if line.startswith(">"):
            if name is not None:
                recs.append((name, "".join(buf)))
            name, buf = line[1:].strip(), []
        elif line.strip():
            buf.append(line.strip())
    if name is not None:
        recs.append((name, "".join(buf)))
    return recs


def attrs(header):
    parts = header.split()
    return parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)


def secondary_structure(zpath, valid_csv, test_csv, out):
    with zipfile.ZipFile(zpath) as z:
        members = {os.path.basename(n): n for n in z.namelist() if n.endswith(".fasta")}
        if "sequences.fasta" not in members or "sampled.fasta" not in members:
            sys.exit(f"{zpath}: expected sequences.fasta and sampled.fasta, found {sorted(members)}")
        read = lambda n: read_fasta(io.TextIOWrapper(z.open(members[n]), encoding="ascii").read())
        seqs = {attrs(h)[0]: s for h, s in read("sequences.fasta")}
        labels = [(attrs(h), l) for h, l in read("sampled.fasta")]
        resolved = {}
        for n in members:
            if "resolved" in n.lower():
                resolved = {attrs(h)[0]: s for h, s in read(n)}
    shared = set()
    for f in (valid_csv, test_csv):
        with open(f, newline="") as fh:
            shared.update(r["seq"] for r in csv.DictReader(fh))
    table = {"H": "0", "E": "1", "C": "2"}
    ss, dis = [], []
    for (name, a), lab in labels:
        if a.get("SET") != "train":
            continue
        s = seqs[name]
        if s in shared or len(lab) != len(s):
            continue
        ss.append((s, "".join(table[c] for c in lab)))
        mask = a.get("RESOLVED") or resolved.get(name)
        if mask is not None:
            dis.append((s, mask))
    write_csv(os.path.join(out, "secondary_structure.train.csv"), ("seq", "label"), ss)
    if len(dis) == len(ss):
        write_csv(os.path.join(out, "disorder_secondary_structure.train.csv"), ("seq", "label"), dis)
    else:
        print("  no resolved mask in the FLIP split: disorder_secondary_structure.train.csv NOT written", file=sys.stderr)
        sys.exit(3)


def main(argv):
    if len(argv) >= 2 and argv[1] == "fluorescence" and len(argv) == 5:
        fluorescence(*argv[2:])
    elif len(argv) >= 2 and argv[1] == "secondary_structure" and len(argv) == 6:
        secondary_structure(*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
