#!/usr/bin/env python3
"""Lay out a mirror folder for `PROTEIN_LM_MIRROR` from an existing data root (e.g. ../shared/datasets).

    make_mirror.py DATA_ROOT MIRROR [--deb FILE.deb ...]

fetch.sh reads URL https://HOST/PATH from MIRROR/HOST/PATH. This writes, at the URLs fetch.sh pins
(parsed from fetch.sh itself, so the two cannot drift apart):
  - the files fetch.sh downloads as they are (protein_bert CSVs, PIPR yeast, MCAPS HIPPIE pairs and
    Pan 2010 files under their upstream names, PRoBERTa dict.txt);
  - hiphq_dict.fasta: the inverse of `ppi_files.py fasta2tsv` ('>id' line, sequence line). Upstream
    may wrap lines differently; fetch.sh's conversion gives the same TSV either way.
  - SYNTHESISED, not the upstream bytes (those are in Git LFS and were never reachable here):
    metl-pub avgfp.tsv, written from the shared fluorescence.train/test.csv so that
    `rebuild_benchmarks.py fluorescence` gives them back (variant = mutations against the validation
    set's majority sequence, numbered from 0; score = label - 3.719212), and FLIP
    splits/secondary_structure/splits.zip (sequences.fasta; sampled.fasta with SET=train and a
    RESOLVED= mask) from the shared secondary_structure / disorder training files. They test the
    fetch and the rebuild path, not the real upstream formats.
  - --deb FILE: a Debian package at deb.debian.org/debian/pool/main/<x>/<source>/FILE, for a fully
    offline fetch of swissprot-2014-go and human-pfam.
Standard library only.
"""
import argparse
import collections
import csv
import io
import os
import re
import shutil
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FETCH = os.path.join(os.path.dirname(HERE), "fetch.sh")
OFFSET = 3.719212
SS = {"0": "H", "1": "E", "2": "C"}


def fetch_vars():
    """The top-level NAME="value" assignments of fetch.sh, with $NAME / ${NAME} expanded."""
    out = {}
    for m in re.finditer(r'^([A-Z_0-9]+)="([^"]*)"$', open(FETCH, encoding="utf-8").read(), re.M):
        out[m.group(1)] = re.sub(r"\$\{?([A-Z_0-9]+)\}?", lambda v: out.get(v.group(1), v.group(0)), m.group(2))
    return out


def target(mirror, url):
    path = os.path.join(mirror, url.split("://", 1)[1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def copy(root, rel, mirror, url):
    src = os.path.join(root, rel)
    if not os.path.isfile(src):
        sys.exit(f"{src}: missing (needed for {url})")
    shutil.copyfile(src, target(mirror, url))


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def avgfp(bench):
    valid = [r["seq"] for r in read_csv(os.path.join(bench, "fluorescence.valid.csv"))]
    length = collections.Counter(map(len, valid)).most_common(1)[0][0]
    cols = [collections.Counter() for _ in range(length)]
    for s in valid:
        if len(s) == length:
            for i, c in enumerate(s):
                cols[i][c] += 1
    wt = "".join(c.most_common(1)[0][0] for c in cols)
    out = io.StringIO()
    out.write("variant\tnum_mutations\tscore\n")
    for split in ("train", "test"):
        path = os.path.join(bench, f"fluorescence.{split}.csv")
        for i, r in enumerate(read_csv(path), 2):
            s = r["seq"]
            if len(s) != length:
                sys.exit(f"{path}:{i}: sequence of {len(s)} residues, the wild type has {length}")
            muts = [f"{a}{p}{b}" for p, (a, b) in enumerate(zip(wt, s)) if a != b]
            out.write(f"{','.join(muts) or '_wt'}\t{len(muts)}\t{float(r['label']) - OFFSET!r}\n")
    return out.getvalue()


def flip_zip(bench):
    ss = read_csv(os.path.join(bench, "secondary_structure.train.csv"))
    dis = read_csv(os.path.join(bench, "disorder_secondary_structure.train.csv"))
    if len(ss) != len(dis) or any(a["seq"] != b["seq"] for a, b in zip(ss, dis)):
        sys.exit(f"{bench}: secondary_structure.train.csv and disorder_secondary_structure.train.csv "
                 "do not hold the same sequences in the same order")
    seqs, labels = io.StringIO(), io.StringIO()
    for i, (a, b) in enumerate(zip(ss, dis)):
        seqs.write(f">chain{i}\n{a['seq']}\n")
        labels.write(f">chain{i} SET=train VALIDATION=False RESOLVED={b['label']}\n"
                     f"{''.join(SS[c] for c in a['label'])}\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("splits/sequences.fasta", seqs.getvalue())
        z.writestr("splits/sampled.fasta", labels.getvalue())
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root")
    ap.add_argument("mirror")
    ap.add_argument("--deb", action="append", default=[])
    a = ap.parse_args()
    v = fetch_vars()
    need = ["PB_RAW", "METL_AVGFP", "FLIP_SS_ZIP", "PIPR_RAW", "MCAPS_RAW", "PROBERTA_DICT"]
    missing = [n for n in need if n not in v]
    if missing:
        sys.exit(f"{FETCH}: no {', '.join(missing)} assignment")
    root, m = a.data_root, a.mirror
    bench = os.path.join(root, "proteinbert-benchmarks")
    rebuilt = {"fluorescence.train.csv", "fluorescence.test.csv", "secondary_structure.train.csv",
               "disorder_secondary_structure.train.csv"}
    n = 0
    for f in sorted(os.listdir(bench)):
        if f.endswith(".csv") and f not in rebuilt:
            copy(root, f"proteinbert-benchmarks/{f}", m, f"{v['PB_RAW']}/{f}")
            n += 1
    with open(target(m, v["METL_AVGFP"]), "w") as fh:
        fh.write(avgfp(bench))
    with open(target(m, v["FLIP_SS_ZIP"]), "wb") as fh:
        fh.write(flip_zip(bench))
    for f in ("protein.actions.tsv", "protein.dictionary.tsv"):
        copy(root, f"ppi/pipr-yeast/{f}", m, f"{v['PIPR_RAW']}/{f}")
    hq = f"{v['MCAPS_RAW']}/Independent-testsets/Human-sets/HIPPIE/HQ"
    copy(root, "ppi/hippie-hq/hippie_hq_pairs.tsv", m, f"{hq}/hiphq_pairs.tsv")
    with open(os.path.join(root, "ppi/hippie-hq/hippie_hq_dict.tsv"), encoding="ascii") as src, \
            open(target(m, f"{hq}/hiphq_dict.fasta"), "w", encoding="ascii") as dst:
        for i, line in enumerate(src, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 2:
                sys.exit(f"{src.name}:{i}: expected 'id<TAB>sequence'")
            dst.write(f">{fields[0]}\n{fields[1]}\n")
    pan = f"{v['MCAPS_RAW']}/Golden-standard-datasets/Pan-2010"
    for f in ("pan_pairs.tsv", "pan_train.tsv", "pan_test.tsv", "pan_sub.fasta"):
        copy(root, f"ppi/pan2010/pan2010_{f}", m, f"{pan}/{f}")
    copy(root, "proberta-vocab/dict.txt", m, v["PROBERTA_DICT"])
    for deb in a.deb:
        name = os.path.basename(deb)
        source = name.split("_", 1)[0]
        shutil.copyfile(deb, target(m, f"https://deb.debian.org/debian/pool/main/{source[0]}/{source}/{name}"))
    print(f"mirror {m}: {n} protein_bert CSVs, synthesised avgfp.tsv and splits.zip, PIPR, HIPPIE, Pan 2010, "
          f"dict.txt, {len(a.deb)} .deb file(s)")


if __name__ == "__main__":
    main()
