#!/usr/bin/env python3
"""Build the human-pfam tables from Bioconductor's org.Hs.eg.db and the full Swiss-Prot 2014 table.

Inputs: org.Hs.eg.sqlite (Debian r-bioc-org.hs.eg.db 3.16.0-1, usr/lib/R/site-library/org.Hs.eg.db/
extdata/) and swissprot_201401_go_full.tsv.gz (build_swissprot_2014.py).

Rule (it reproduces the shared files byte for byte, checked against 3.16.0-1):
  - every accession of table `uniprot` that is in the Swiss-Prot 2014 table, sorted (byte order);
    accessions that are not (TrEMBL, or newer than 2014) are left out;
  - its genes are all `_id`s that `uniprot` maps it to; entrez_gene_ids = their `genes.gene_id`,
    sorted as strings, ';'-joined;
  - pfam_ids / prosite_ids = the distinct non-empty ids of tables `pfam` / `prosite` over those
    genes (both are keyed by gene, not by protein), sorted, ';'-joined; n_pfam = how many;
  - sequence from the Swiss-Prot 2014 table.
human_swissprot_pfam.tsv: accession, entrez_gene_ids, pfam_ids, n_pfam, prosite_ids, sequence.
human_swissprot_single_pfam.tsv: accession, pfam_id, sequence for the rows with n_pfam == 1.

Usage: build_human_pfam.py org.Hs.eg.sqlite FULL.tsv.gz OUT_DIR
Standard library only.
"""
import collections
import gzip
import os
import sqlite3
import sys

PFAM = "human_swissprot_pfam.tsv"
SINGLE = "human_swissprot_single_pfam.tsv"


def read_db(path):
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such file")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        genes = dict(db.execute("SELECT _id, gene_id FROM genes"))
        acc_genes = collections.defaultdict(set)
        for gid, acc in db.execute("SELECT _id, uniprot_id FROM uniprot"):
            acc_genes[acc].add(gid)
        fams = {}
        for table, col in (("pfam", "pfam_id"), ("prosite", "prosite_id")):
            ids = collections.defaultdict(set)
            for gid, fam in db.execute(f"SELECT _id, {col} FROM {table}"):
                if fam:
                    ids[gid].add(fam)
            fams[table] = ids
    except sqlite3.Error as e:
        sys.exit(f"{path}: {e} (expected the org.Hs.eg.db tables genes, uniprot, pfam, prosite)")
    finally:
        db.close()
    for acc, gids in acc_genes.items():
        unknown = gids - genes.keys()
        if unknown:
            sys.exit(f"{path}: table uniprot maps {acc} to _id {min(unknown)}, which table genes lacks")
    return genes, acc_genes, fams["pfam"], fams["prosite"]


def read_sequences(path, wanted):
    seqs = {}
    with gzip.open(path, "rt", encoding="ascii") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        if header[:1] != ["accession"] or header[-1:] != ["sequence"]:
            sys.exit(f"{path}:1: unexpected header {header}")
        for lineno, line in enumerate(fh, 2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(header):
                sys.exit(f"{path}:{lineno}: {len(fields)} fields, expected {len(header)}")
            if fields[0] in wanted:
                seqs[fields[0]] = fields[-1]
    return seqs


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    db_path, full, out_dir = argv[1:]
    genes, acc_genes, pfam, prosite = read_db(db_path)
    seqs = read_sequences(full, acc_genes.keys())
    os.makedirs(out_dir, exist_ok=True)
    rows = single = 0
    with open(os.path.join(out_dir, PFAM + ".part"), "w", encoding="ascii", newline="") as a, \
            open(os.path.join(out_dir, SINGLE + ".part"), "w", encoding="ascii", newline="") as b:
        a.write("accession\tentrez_gene_ids\tpfam_ids\tn_pfam\tprosite_ids\tsequence\n")
        b.write("accession\tpfam_id\tsequence\n")
        for acc in sorted(acc_genes):
            seq = seqs.get(acc)
            if seq is None:
                continue
            gids = acc_genes[acc]
            egs = sorted(genes[g] for g in gids)
            pf = sorted(set().union(*(pfam.get(g, ()) for g in gids)))
            ps = sorted(set().union(*(prosite.get(g, ()) for g in gids)))
            a.write(f"{acc}\t{';'.join(egs)}\t{';'.join(pf)}\t{len(pf)}\t{';'.join(ps)}\t{seq}\n")
            rows += 1
            if len(pf) == 1:
                b.write(f"{acc}\t{pf[0]}\t{seq}\n")
                single += 1
    for name in (PFAM, SINGLE):
        os.replace(os.path.join(out_dir, name + ".part"), os.path.join(out_dir, name))
    print(f"  {len(acc_genes)} accessions in org.Hs.eg.db, {rows} in Swiss-Prot 2014, {single} with exactly "
          f"one Pfam family; wrote {PFAM} and {SINGLE} in {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
