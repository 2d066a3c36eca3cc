#!/usr/bin/env python3
"""Make the small test samples in datasets/samples/ from the shared data (standard library only).

    python3 datasets/samples/make_samples.py [--data-root DIR]

DIR defaults to $PROTEIN_LM_DATA, else ../shared/datasets relative to the repository root.
Everything is seeded (random.Random(SEED)), so rerunning on the same shared files gives the
same bytes. Each output is kept under 200 KB; the script fails if one is not.
After regenerating, run datasets/make_manifest.py to refresh the checksums.
"""
import argparse
import csv
import gzip
import os
import random
import sys

SEED = 20240601
MAX_BYTES = 200 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def default_root():
    env = os.environ.get("PROTEIN_LM_DATA")
    return env if env else os.path.join(REPO, "..", "shared", "datasets")


def write(path, text):
    data = text.encode("ascii")
    if len(data) >= MAX_BYTES:
        sys.exit(f"{path}: {len(data)} bytes, over the 200 KB limit")
    with open(path, "wb") as fh:
        fh.write(data)
    print(f"  wrote {os.path.relpath(path, REPO)} ({len(data)} bytes)")


def swissprot(root, rng):
    src = os.path.join(root, "swissprot-2014-go", "swissprot_201401_go_sample50k.tsv.gz")
    with gzip.open(src, "rt", encoding="ascii") as fh:
        header = fh.readline()
        rows = [l for l in fh]
    # Keep the sample small: draw among proteins of at most 500 residues.
    short = [i for i, l in enumerate(rows) if int(l.split("\t", 2)[1]) <= 500]
    pick = sorted(rng.sample(short, 300))
    write(os.path.join(HERE, "swissprot_sample300.tsv"), header + "".join(rows[i] for i in pick))
    # 50 of them as FASTA (60 residues a line), header ">ACCESSION".
    out = []
    for i in sorted(rng.sample(pick, 50)):
        acc, *_, seq = rows[i].rstrip("\n").split("\t")
        out.append(f">{acc}\n" + "".join(seq[j:j + 60] + "\n" for j in range(0, len(seq), 60)))
    write(os.path.join(HERE, "sample.fasta"), "".join(out))


def human_pfam(root, rng):
    src = os.path.join(root, "human-pfam", "human_swissprot_single_pfam.tsv")
    with open(src, encoding="ascii") as fh:
        header = fh.readline()
        rows = fh.readlines()
    fam = {}
    for i, l in enumerate(rows):
        fam.setdefault(l.split("\t", 2)[1], []).append(i)
    # Families with 5..60 members, whole families, until about 300 rows.
    cands = sorted(f for f, m in fam.items() if 5 <= len(m) <= 60)
    rng.shuffle(cands)
    chosen, keep = [], []
    for f in cands:
        if len(keep) >= 290:
            break
        if len(keep) + len(fam[f]) > 320:
            continue
        chosen.append(f)
        keep.extend(fam[f])
    write(os.path.join(HERE, "human_pfam_single_sample.tsv"), header + "".join(rows[i] for i in sorted(keep)))
    print(f"    {len(keep)} proteins from {len(chosen)} families: {' '.join(sorted(chosen))}")


def pipr(root, rng):
    d = os.path.join(root, "ppi", "pipr-yeast")
    with open(os.path.join(d, "protein.dictionary.tsv"), encoding="ascii") as fh:
        dict_lines = fh.readlines()
    seqs = {l.split("\t", 1)[0]: l for l in dict_lines}
    seqlen = {k: len(v.rstrip("\n").split("\t")[1]) for k, v in seqs.items()}
    with open(os.path.join(d, "protein.actions.tsv"), encoding="ascii") as fh:
        pairs = fh.readlines()
    # Pairs of short proteins only (both <= 300 aa) so the dictionary stays small; 150 + 150.
    ok = {"0": [], "1": []}
    for i, l in enumerate(pairs):
        a, b, y = l.rstrip("\n").split("\t")
        if seqlen[a] <= 300 and seqlen[b] <= 300:
            ok[y].append(i)
    pick = sorted(rng.sample(ok["1"], 150) + rng.sample(ok["0"], 150))
    need = set()
    for i in pick:
        a, b, _ = pairs[i].split("\t")
        need.update((a, b))
    out = os.path.join(HERE, "pipr_yeast_sample")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "protein.actions.tsv"), "".join(pairs[i] for i in pick))
    write(os.path.join(out, "protein.dictionary.tsv"), "".join(l for l in dict_lines if l.split("\t", 1)[0] in need))


def signalp(root, rng):
    d = os.path.join(root, "proteinbert-benchmarks")
    for split, n in (("train", 200), ("test", 100)):
        with open(os.path.join(d, f"signalP_binary.{split}.csv"), encoding="ascii") as fh:
            header = fh.readline()
            rows = fh.readlines()
        pick = sorted(rng.sample(range(len(rows)), n))
        write(os.path.join(HERE, f"signalP_sample.{split}.csv"), header + "".join(rows[i] for i in pick))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=default_root())
    args = ap.parse_args()
    root = args.data_root
    print(f"making samples from {root} (seed {SEED})")
    # One generator per sample, so changing one sample does not shift the others.
    swissprot(root, random.Random(SEED))
    human_pfam(root, random.Random(SEED + 1))
    pipr(root, random.Random(SEED + 2))
    signalp(root, random.Random(SEED + 3))


if __name__ == "__main__":
    main()
