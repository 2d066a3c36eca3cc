#!/usr/bin/env python3
"""Regenerate datasets/manifest.json from the data files themselves (standard library only).

    python3 datasets/make_manifest.py [--data-root DIR] [--full-table PATH]

--data-root  where the shared data live (default: $PROTEIN_LM_DATA, else ../shared/datasets
             relative to the repository root).
--full-table the rebuilt full Swiss-Prot 2014 table (swissprot_201401_go_full.tsv.gz, made by
             datasets/fetch.sh swissprot-2014-go). If it is not given and not found under the
             data root, the entry already in manifest.json is kept as it is.

sha256, bytes and rows are computed here. rows = data rows: lines minus the header for files
with a header, lines for headerless files, records for FASTA files. The descriptions, sources,
licences and fetch methods are the catalogue below; edit them here, not in the JSON.
"""
import argparse
import gzip
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MANIFEST = os.path.join(HERE, "manifest.json")
FULL_TABLE = "swissprot-2014-go/swissprot_201401_go_full.tsv.gz"

PB = "github.com/nadavbra/protein_bert @ 83198c99f18147c126f16f504e53e2201a6256e4, protein_benchmarks/"
REBUILT_FLUO = ("rebuilt (the upstream file is in Git LFS): from gitter-lab/metl-pub @ 40d8fbf9 "
                "data/dms_data/avgfp/avgfp.tsv, label = score + 3.719212; fetch.sh rebuilds it with "
                "helpers/rebuild_benchmarks.py, whose output is not guaranteed to equal these bytes "
                "(untested: GitHub was unreachable when it was written)")
REBUILT_SS = ("rebuilt (the upstream file is in Git LFS): from J-SNACKKB/FLIP @ 62cace87 "
              "splits/secondary_structure (NetSurfP-2.0 chains); fetch.sh rebuilds it with "
              "helpers/rebuild_benchmarks.py, whose output is not guaranteed to equal these bytes "
              "(untested: GitHub was unreachable when it was written)")

# (path relative to the data root, kind, reproducible_from_upstream, note)
# kind: "header" (first line is a header), "noheader", "fasta", "gz-header"
CATALOGUE = [
    {
        "name": "swissprot-2014-go",
        "description": "UniProtKB/Swiss-Prot release 2014_01 with direct GO annotations (MF/BP/CC, IEA included) "
                       "and the GO graph of the same date: the full table (516,371 proteins) rebuilt from Debian's "
                       "metastudent-data and a seeded sample of 50,000 of them for the tiny and demo scales. "
                       "Table columns: accession, length, go_mf, go_bp, go_cc, sequence (GO lists ';'-separated).",
        "source": "Debian bookworm package metastudent-data 2.0.1-8 (dataset_201401: BLAST databases "
                  "{MFO,BPO,CCO}/goasp.fasta, goGraph.txt, nameMapping.txt); data from UniProtKB/Swiss-Prot 2014_01 "
                  "and the Gene Ontology",
        "license": "UniProtKB CC BY 4.0; Gene Ontology CC BY 4.0; Debian packaging GPL-2+",
        "used_by": ["ProteinBERT pretraining (sequences + GO targets)", "PRoBERTa pretraining",
                    "PRoBERTa BPE training", "tiny/demo-scale experiments (50k sample)",
                    "paper-scale runs (full table)"],
        "fetch": "debian-metastudent: apt-get download metastudent-data, dpkg-deb -x, blastdbcmd over MFO/BPO/CCO, "
                 "union by accession (helpers/build_swissprot_2014.py), gzip; GO graph/names copied from the package; "
                 "the 50k sample drawn from the full table by helpers/sample_swissprot_2014.py",
        "files": [
            ("swissprot-2014-go/swissprot_201401_go_sample50k.tsv.gz", "gz-header", True,
             "50,000 rows of the full table drawn by helpers/sample_swissprot_2014.py: "
             "random.Random(0).sample(range(516371), 50000), kept in accession order, gzip level 9 with the "
             "original member name and mtime; the draw from the fetched full table equals this file byte for byte "
             "(checked)"),
            ("swissprot-2014-go/go_graph_201401.txt", "noheader", True,
             "byte-identical to dataset_201401/goGraph.txt in metastudent-data 2.0.1-8 (checked)"),
            ("swissprot-2014-go/go_term_names_201401.txt", "noheader", True,
             "byte-identical to dataset_201401/nameMapping.txt in metastudent-data 2.0.1-8 (checked)"),
        ],
    },
    {
        "name": "human-pfam",
        "description": "Human Swiss-Prot proteins with Pfam (and PROSITE) family labels, joined with the Swiss-Prot "
                       "2014 sequences; the single-family file is the stand-in for the paper's UniProt protein-family labels.",
        "source": "Debian package r-bioc-org.hs.eg.db 3.16.0-1 (SQLite tables uniprot, pfam, prosite) joined on "
                  "accession with swissprot-2014-go",
        "license": "org.Hs.eg.db Artistic-2.0; UniProtKB CC BY 4.0; Pfam CC0",
        "used_by": ["family clustering (PCA, k-means, NMI)", "family classification fine-tuning",
                    "PPI conservative negatives (human protein pool)"],
        "fetch": "debian-orghs: r-bioc-org.hs.eg.db_3.16.0-1_all.deb (sha256 pinned in fetch.sh) from deb.debian.org "
                 "or apt-get download, dpkg-deb -x, helpers/build_human_pfam.py over its org.Hs.eg.sqlite and the "
                 "full Swiss-Prot 2014 table (built first if missing)",
        "files": [
            ("human-pfam/human_swissprot_pfam.tsv", "header", True,
             "every accession of org.Hs.eg.db's uniprot table that is in Swiss-Prot 2014, sorted; Entrez ids, "
             "Pfam and PROSITE ids over all its genes, sorted; rebuilt by helpers/build_human_pfam.py byte for "
             "byte (checked)"),
            ("human-pfam/human_swissprot_single_pfam.tsv", "header", True,
             "the rows of human_swissprot_pfam.tsv with exactly one Pfam id; rebuilt by "
             "helpers/build_human_pfam.py byte for byte (checked)"),
        ],
    },
    {
        "name": "proteinbert-benchmarks",
        "description": "ProteinBERT's downstream benchmarks (CSV seq,label; signalP: label,seq): signal peptide, "
                       "fluorescence, stability, remote homology, fold classes, secondary structure, disorder, "
                       "neuropeptide cleavage. Major PTMs (PhosphoSitePlus) are not included.",
        "source": PB + " (fluorescence.train/test rebuilt from gitter-lab/metl-pub @ 40d8fbf9; "
                  "secondary_structure.train and disorder_secondary_structure.train rebuilt from J-SNACKKB/FLIP @ 62cace87)",
        "license": "protein_bert repository MIT; data keep their upstream terms (TAPE, NetSurfP-2.0, ProFET/NeuroPID); "
                   "metl-pub MIT; FLIP AFL-3.0",
        "used_by": ["benchmarks (ProteinBERT fine-tuning, Table/Fig. of the paper)"],
        "fetch": "github-raw at the pinned commit; four files rebuilt by helpers/rebuild_benchmarks.py",
        "files": [],  # filled below
    },
    {
        "name": "ppi/pipr-yeast",
        "description": "Guo 2008 yeast PPI set as preprocessed by PIPR: 11,188 pairs (half positive), with a "
                       "sequence dictionary.",
        "source": "github.com/muhaochen/seq_ppi @ 9172fbdc, yeast/preprocessed/",
        "license": "Apache-2.0 (PIPR repository)",
        "used_by": ["PPI fine-tuning (small yeast set)", "PPI tests"],
        "fetch": "github-raw at the pinned commit",
        "files": [
            ("ppi/pipr-yeast/protein.actions.tsv", "noheader", True, "raw upstream file"),
            ("ppi/pipr-yeast/protein.dictionary.tsv", "noheader", True, "raw upstream file"),
        ],
    },
    {
        "name": "ppi/hippie-hq",
        "description": "HIPPIE v2.0 high-quality human interactions (positives only) with a sequence dictionary; "
                       "negatives are to be sampled (conservative / aggressive) as in the PRoBERTa paper.",
        "source": "github.com/anhvt00/MCAPS @ 34c92378, data/Independent-testsets/Human-sets/HIPPIE/HQ/ "
                  "(hiphq_pairs.tsv, hiphq_dict.fasta); interactions from HIPPIE v2.0",
        "license": "MCAPS repository Apache-2.0; the interactions are HIPPIE v2.0 data under HIPPIE's own terms "
                   "(see the HIPPIE website; cite Alanis-Lobato et al. 2017); check them before commercial use",
        "used_by": ["PPI fine-tuning (PRoBERTa conservative/aggressive)", "PPI evaluation"],
        "fetch": "github-raw at the pinned commit; the dictionary converted from FASTA to 'id<TAB>sequence'",
        "files": [
            ("ppi/hippie-hq/hippie_hq_pairs.tsv", "noheader", True, "upstream hiphq_pairs.tsv, renamed"),
            ("ppi/hippie-hq/hippie_hq_dict.tsv", "noheader", True,
             "upstream hiphq_dict.fasta converted to one 'id<TAB>sequence' line per record, same order"),
        ],
    },
    {
        "name": "ppi/pan2010",
        "description": "Pan 2010 human PPI gold standard (27,593 positive / 34,298 negative) with the source's "
                       "train/test split and sequences; a fill-in FASTA from Swiss-Prot 2014 covers most missing ids.",
        "source": "github.com/anhvt00/MCAPS @ 34c92378, data/Golden-standard-datasets/Pan-2010/ "
                  "(pan_pairs.tsv, pan_train.tsv, pan_test.tsv, pan_sub.fasta); fill-in from swissprot-2014-go",
        "license": "MCAPS Apache-2.0; fill-in sequences UniProtKB CC BY 4.0",
        "used_by": ["PPI fine-tuning and evaluation (human, larger set)"],
        "fetch": "github-raw at the pinned commit (files prefixed pan2010_); the fill-in FASTA rebuilt from the full "
                 "Swiss-Prot 2014 table (ids in pan_pairs not in pan_sub, sorted, one line per sequence)",
        "files": [
            ("ppi/pan2010/pan2010_pan_pairs.tsv", "noheader", True, "upstream pan_pairs.tsv, renamed"),
            ("ppi/pan2010/pan2010_pan_train.tsv", "noheader", True, "upstream pan_train.tsv, renamed"),
            ("ppi/pan2010/pan2010_pan_test.tsv", "noheader", True, "upstream pan_test.tsv, renamed"),
            ("ppi/pan2010/pan2010_pan_sub.fasta", "fasta", True, "upstream pan_sub.fasta, renamed"),
            ("ppi/pan2010/pan2010_fill_from_swissprot2014.fasta", "fasta", True,
             "rebuilt by fetch.sh from the full Swiss-Prot 2014 table (rule checked against this file)"),
        ],
    },
    {
        "name": "proberta-vocab",
        "description": "The original PRoBERTa fairseq dictionary: 9,997 SentencePiece BPE pieces with counts, then "
                       "madeupword0000..0006 (ids 0-3 are <s> <pad> </s> <unk>; pieces from id 4).",
        "source": "github.com/wesleywt/PRoBERTa @ 4fb5f9d7c9adc45e68abc2d4843ae0f46bbaaae5 (branch porting), "
                  "src/pretraining/dict.txt",
        "license": "none: the PRoBERTa repository has no licence; used as a reference only (loading original "
                   "checkpoints, comparing our BPE vocabulary), not redistributed",
        "used_by": ["PRoBERTa BPE (reference vocabulary)", "loading original PRoBERTa checkpoints"],
        "fetch": "github-raw at the pinned commit",
        "files": [("proberta-vocab/dict.txt", "noheader", True, "raw upstream file")],
    },
]

BENCH = [
    ("signalP_binary", ["train", "test"]),
    ("fluorescence", ["train", "valid", "test"]),
    ("stability", ["train", "valid", "test"]),
    ("remote_homology", ["train", "valid", "test"]),
    ("scop", ["train", "test"]),
    ("secondary_structure", ["train", "valid", "test"]),
    ("disorder_secondary_structure", ["train", "valid", "test"]),
    ("ProFET_NP_SP_Cleaved", ["train", "valid", "test"]),
]
REBUILT = {
    "fluorescence.train.csv": REBUILT_FLUO,
    "fluorescence.test.csv": REBUILT_FLUO,
    "secondary_structure.train.csv": REBUILT_SS,
    "disorder_secondary_structure.train.csv": REBUILT_SS,
}
for task, splits in BENCH:
    for s in splits:
        f = f"{task}.{s}.csv"
        CATALOGUE[2]["files"].append(
            (f"proteinbert-benchmarks/{f}", "header", f not in REBUILT, REBUILT.get(f, "raw upstream file")))

SAMPLES = {
    "name": "samples",
    "description": "Small seeded samples of our own for fast tests (each under 200 KB), committed in the repository "
                   "under datasets/samples/ and made by datasets/samples/make_samples.py from the shared files.",
    "source": "this repository: datasets/samples/make_samples.py over the data sets above",
    "license": "as the data set each sample is drawn from (UniProtKB CC BY 4.0 / GO CC BY 4.0; Artistic-2.0; "
               "PIPR Apache-2.0; protein_bert MIT with upstream benchmark terms)",
    "used_by": ["unit and integration tests", "CI smoke runs"],
    "fetch": "in-repo: no download; paths are relative to datasets/samples/",
    "files": [
        ("swissprot_sample300.tsv", "header", False, "300 proteins (<= 500 aa) of the 50k sample"),
        ("sample.fasta", "fasta", False, "50 of the proteins above, 60 residues a line"),
        ("human_pfam_single_sample.tsv", "header", False, "whole families with 5-60 members, about 300 proteins"),
        ("pipr_yeast_sample/protein.actions.tsv", "noheader", False, "150 positive + 150 negative pairs, both proteins <= 300 aa"),
        ("pipr_yeast_sample/protein.dictionary.tsv", "noheader", False, "the dictionary entries those pairs need"),
        ("signalP_sample.train.csv", "header", False, "200 rows of signalP_binary.train.csv"),
        ("signalP_sample.test.csv", "header", False, "100 rows of signalP_binary.test.csv"),
    ],
}
SAMPLE_NOTE = "our own seeded sample; regenerate with datasets/samples/make_samples.py"


def default_root():
    env = os.environ.get("PROTEIN_LM_DATA")
    return env if env else os.path.join(REPO, "..", "shared", "datasets")


def stats(path, kind):
    h = hashlib.sha256()
    nbytes = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            nbytes += len(chunk)
    if kind == "gz-header":
        with gzip.open(path, "rb") as fh:
            rows = sum(1 for _ in fh) - 1
    else:
        with open(path, "rb") as fh:
            if kind == "fasta":
                rows = sum(1 for l in fh if l.startswith(b">"))
            else:
                rows = sum(1 for l in fh if l.strip())
                if kind == "header":
                    rows -= 1
    return h.hexdigest(), nbytes, rows


def entry(root, rel, kind, repro, note, manifest_path=None):
    path = os.path.join(root, rel)
    if not os.path.isfile(path):
        sys.exit(f"missing file: {path}")
    sha, nbytes, rows = stats(path, kind)
    e = {"path": manifest_path or rel, "sha256": sha, "bytes": nbytes, "rows": rows,
         "reproducible_from_upstream": repro}
    if note:
        e["note"] = note
    print(f"  {e['path']}: {rows} rows, {nbytes} bytes")
    return e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=default_root())
    ap.add_argument("--full-table", default=None)
    args = ap.parse_args()
    old = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as fh:
            for d in json.load(fh).get("datasets", []):
                for f in d["files"]:
                    old[f["path"]] = f
    out = []
    for d in CATALOGUE:
        files = [entry(args.data_root, *f) for f in d["files"]]
        if d["name"] == "swissprot-2014-go":
            full = args.full_table or os.path.join(args.data_root, FULL_TABLE)
            note = ("the full table (516,371 proteins in the 2014_01 build), rebuilt by fetch.sh from Debian's "
                    "metastudent-data 2.0.1-8 with helpers/build_swissprot_2014.py (gzip: mtime 0, level 9); "
                    "byte-identical given the same package and zlib")
            if os.path.isfile(full):
                files.insert(0, entry(os.path.dirname(os.path.dirname(full)), os.path.join(
                    os.path.basename(os.path.dirname(full)), os.path.basename(full)), "gz-header", True, note,
                    manifest_path=FULL_TABLE))
            elif FULL_TABLE in old:
                print(f"  {FULL_TABLE}: not found, keeping the recorded entry")
                files.insert(0, old[FULL_TABLE])
        out.append({k: v for k, v in d.items() if k != "files"} | {"files": files})
    sd = os.path.join(HERE, "samples")
    out.append({k: v for k, v in SAMPLES.items() if k != "files"} |
               {"files": [entry(sd, rel, kind, repro, f"{note}; {SAMPLE_NOTE}") for rel, kind, repro, note in SAMPLES["files"]]})
    manifest = {
        "version": 1,
        "data_root_note": "file paths are relative to the data root (PROTEIN_LM_DATA, else ../shared/datasets beside "
                          "the checkout, else the user data directory); the samples data set's paths are relative "
                          "to datasets/samples/ in the repository",
        "datasets": out,
    }
    with open(MANIFEST + ".part", "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    os.replace(MANIFEST + ".part", MANIFEST)
    print(f"wrote {os.path.relpath(MANIFEST, REPO)}")


if __name__ == "__main__":
    main()
