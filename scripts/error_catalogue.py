#!/usr/bin/env python3
"""Run every bad-input case of the command line and write what it prints to docs/errors.md.

    cargo build && python3 scripts/error_catalogue.py [BINARY]

Each case runs the real binary in a fresh scratch directory (paths in the catalogue are relative to
it; `repo/` is the repository), so the catalogue shows the exact messages a user gets. The same cases
are asserted in tests/cli_bad_input.rs; this script only records them.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "target/debug/protein-lm").resolve()

CASES = {
    1: "missing input file",
    2: "the other model's directory",
    3: "unknown or misspelt config key",
    4: "value out of range",
    5: "NaN or infinite label",
    6: "empty input",
    7: "lowercase sequences (accepted, counted)",
    8: "output that cannot be written (checked before the work)",
    9: "disk full while writing (nothing half-written left)",
}


def setup(d: Path):
    os.symlink(REPO, d / "repo")
    (d / "empty.fasta").write_text("")
    (d / "lower.fasta").write_text(">P1\nmktayiakqr\n>P2\nMKTAYiakQR\n>P3\nMSSSPPQ\n")
    (d / "afile").write_text("x")
    (d / "header_only.tsv").write_text("accession\tpfam_id\tsequence\n")
    (d / "empty_pairs.tsv").write_text("\n")
    (d / "nan_pairs.tsv").write_text("P32450\tP00044\t1\nP43563\tP29340\tnan\n")
    (d / "out").mkdir()
    table = (REPO / "datasets/samples/swissprot_sample300.tsv").read_text().splitlines()
    # The first ten sequences soft-masked (lower case).
    lowered = [l if not 1 <= i <= 10 else l.rsplit("\t", 1)[0] + "\t" + l.rsplit("\t", 1)[1].lower() for i, l in enumerate(table)]
    (d / "lower.tsv").write_text("\n".join(lowered) + "\n")
    for args in (
        ["init", "--model", "proteinbert", "--size", "tiny", "--annotations", "8", "--out", "pb"],
        ["init", "--model", "proberta", "--size", "tiny", "--dict", "repo/tests/fixtures/proberta/dict.txt", "--out", "pr"],
    ):
        subprocess.run([str(BIN), *args], cwd=d, check=True, capture_output=True)

    def config(shipped, name, edit):
        value = json.loads((REPO / "configs" / shipped).read_text())
        edit(value)
        (d / name).write_text(json.dumps(value, indent=2))

    def rename(section, old, new):
        section[new] = section.pop(old)

    config("proberta-pretrain-tiny.json", "typo_required.json", lambda v: rename(v["train"], "max_updates", "max_update"))
    config("proberta-pretrain-tiny.json", "typo_optional.json", lambda v: v["train"].update(clip_nrom=1.0))
    config("proberta-pretrain-tiny.json", "typo_model.json", lambda v: v["model"]["model"].update(hiden_size=8))
    config("proteinbert-pretrain-tiny.json", "typo_pb_model.json", lambda v: v["model"]["model"].update(d_globl=8))
    config("proberta-pretrain-tiny.json", "negative.json", lambda v: v["mlm"].update(batch_size=-4))
    config("proberta-pretrain-tiny.json", "zero.json", lambda v: v["mlm"].update(batch_size=0))
    config("proteinbert-pretrain-tiny.json", "probability.json", lambda v: v["denoising"].update(token_noise=1.5))
    config("proberta-finetune-tiny.json", "ft_flat.json", lambda v: v.update(max_trian=10))
    config("proberta-finetune-tiny.json", "ft_nested.json", lambda v: rename(v["ppi"], "negative_ratio", "negative_raito"))
    config("proberta-finetune-tiny.json", "ft_fraction.json", lambda v: v.update(valid_fraction=1.2))
    config("proberta-finetune-tiny.json", "ft_ratio.json", lambda v: v["ppi"].update(negative_ratio=0))
    config("proteinbert-finetune-tiny.json", "ft_stage.json", lambda v: v["stages"][1]["train"].update(validate_every_epoch=1))
    config("proteinbert-finetune-tiny.json", "ft_batch.json", lambda v: v["stages"][1].update(batch_size=0))
    config("proteinbert-finetune-ppi-tiny.json", "ppi_own.json", lambda v: v["ppi"].update(negatives=None))
    config("proteinbert-finetune-ppi-tiny.json", "ppi_typo.json", lambda v: rename(v["ppi"], "train_fraction", "train_fracton"))
    config("proteinbert-finetune-ppi-tiny.json", "ppi_pair.json", lambda v: v.update(pair="concatenate"))
    config("proteinbert-finetune-ppi-tiny.json", "ppi_fraction.json", lambda v: v["ppi"].update(train_fraction=0))

    bench = d / "data/proteinbert-benchmarks"
    bench.mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copy(REPO / f"datasets/samples/signalP_sample.{split}.csv", bench / f"signalP_binary.{split}.csv")
    good = "seq,label\nMKTAYIAKQR,1.5\nMSSSPPQ,0.5\n"
    (bench / "fluorescence.train.csv").write_text("seq,label\nMKTAYIAKQR,1.5\nMSSSPPQ,NaN\n")
    (bench / "fluorescence.valid.csv").write_text(good)
    (bench / "fluorescence.test.csv").write_text(good)
    (bench / "stability.train.csv").write_text("seq,label\n")
    (bench / "stability.valid.csv").write_text(good)
    (bench / "stability.test.csv").write_text(good)


S = "repo/datasets/samples"
PB_FT = "repo/configs/proteinbert-finetune-tiny.json"
PR_FT = "repo/configs/proberta-finetune-tiny.json"
PB_PPI = "repo/configs/proteinbert-finetune-ppi-tiny.json"
YEAST = "--data repo/datasets/samples/pipr_yeast_sample/protein.actions.tsv --sequences repo/datasets/samples/pipr_yeast_sample/protein.dictionary.tsv"
PR_PT = "repo/configs/proberta-pretrain-tiny.json"
FULL = "full"  # run under `ulimit -f 1` with SIGXFSZ ignored: a write past 512 bytes fails like a full disk

# (subcommand, case number, arguments, options)
RUNS = [
    ("data stats", 1, "data stats missing.fasta", {}),
    ("data stats", 6, "data stats empty.fasta", {}),
    ("data stats", 6, "data stats header_only.tsv", {}),
    ("data stats", 7, "data stats lower.fasta", {"show": "stdout"}),
    ("data fetch", 3, "data fetch --verify-only swisprot-2014-go", {}),
    ("data split", 1, "data split --input missing.fasta --out split", {}),
    ("data split", 4, "data split --input lower.fasta --out split --fractions 0.8,-0.1,0.3", {}),
    ("data split", 4, f"data split --pairs {S}/pipr_yeast_sample/protein.actions.tsv --sequences {S}/pipr_yeast_sample/protein.dictionary.tsv --negatives aggressive --negative-ratio=-1 --out split", {}),
    ("data split", 5, f"data split --pairs nan_pairs.tsv --sequences {S}/pipr_yeast_sample/protein.dictionary.tsv --out split", {}),
    ("data split", 6, "data split --input empty.fasta --out split", {}),
    ("data split", 6, f"data split --pairs empty_pairs.tsv --sequences {S}/pipr_yeast_sample/protein.dictionary.tsv --out split", {}),
    ("data split", 7, "data split --input lower.fasta --out split_lower", {"show": "stdout"}),
    ("data split", 8, "data split --input lower.fasta --out afile", {}),
    ("data split", 8, "data split --input lower.fasta --out afile/sub", {}),
    ("data split", 8, "data split --input lower.fasta --out /sys/split", {}),
    ("data split", 9, f"data split --input {S}/sample.fasta --out split_full", {FULL: True, "list": "split_full"}),
    ("tokenizer train", 1, "tokenizer train --input missing.fasta --out tok", {}),
    ("tokenizer train", 4, f"tokenizer train --input {S}/sample.fasta --out tok --vocab-size 0", {}),
    ("tokenizer train", 6, "tokenizer train --input empty.fasta --out tok", {}),
    ("tokenizer train", 8, f"tokenizer train --input {S}/sample.fasta --out afile", {}),
    ("tokenizer encode", 1, "tokenizer encode --input missing.fasta --tokenizer pr", {}),
    ("tokenizer encode", 1, "tokenizer encode --input lower.fasta --tokenizer nowhere", {}),
    ("tokenizer encode", 2, "tokenizer encode --input lower.fasta --tokenizer pb", {}),
    ("tokenizer encode", 6, "tokenizer encode --input empty.fasta --tokenizer pr", {}),
    ("tokenizer encode", 7, "tokenizer encode --input lower.fasta --model proteinbert --pieces", {"show": "all"}),
    ("tokenizer encode", 8, "tokenizer encode --input lower.fasta --tokenizer pr --out nodir/x.txt", {}),
    ("tokenizer encode", 8, "tokenizer encode --input lower.fasta --tokenizer pr --out pb", {}),
    ("tokenizer encode", 9, "tokenizer encode --input lower.fasta --tokenizer pr --out /dev/full", {}),
    ("import", 1, "import proteinbert-keras missing.pkl --out imported", {}),
    ("import", 1, "import fairseq missing.pt --out imported", {}),
    ("import", 1, "import hf-roberta missing_dir --out imported", {}),
    ("import", 2, "import proteinbert-keras repo/tests/fixtures/proberta/fairseq_zip_fp32.pt --out imported", {}),
    ("import", 2, "import fairseq repo/tests/fixtures/proteinbert/weights_numpy1.pkl --dict repo/tests/fixtures/proberta/dict.txt --out imported", {}),
    ("import", 2, "import hf-roberta pb --out imported", {}),
    ("import", 8, "import proteinbert-keras repo/tests/fixtures/proteinbert/weights_numpy1.pkl --out afile", {}),
    ("init", 1, "init --model proberta --size tiny --dict missing.txt --out m", {}),
    ("init", 2, "init --model proberta --size tiny --dict pb --out m", {}),
    ("init", 4, "init --model proteinbert --size tiny --annotations 0 --out m", {}),
    ("init", 8, "init --model proteinbert --size tiny --out afile", {}),
    ("embed", 1, "embed --device cpu --model missing_model --fasta lower.fasta --out e.npy", {}),
    ("embed", 1, "embed --device cpu --model pb --fasta missing.fasta --out e.npy", {}),
    ("embed", 2, "embed --device cpu --model pb --fasta lower.fasta --out e.npy --pooling proberta-clustering", {}),
    ("embed", 2, "embed --device cpu --model pr --fasta lower.fasta --out e.npy --pooling global", {}),
    ("embed", 4, "embed --device cpu --model pb --fasta lower.fasta --out e.npy --batch-tokens 0", {}),
    ("embed", 6, "embed --device cpu --model pb --fasta empty.fasta --out e.npy", {}),
    ("embed", 8, "embed --device cpu --model pb --fasta lower.fasta --out nodir/e.npy", {}),
    ("embed", 8, "embed --device cpu --model pb --fasta lower.fasta --out afile/e.npy", {}),
    ("embed", 8, "embed --device cpu --model pb --fasta lower.fasta --out /sys/e.npy", {}),
    ("embed", 9, "embed --device cpu --model pb --fasta lower.fasta --out out/e.npy", {FULL: True, "list": "out"}),
    ("pretrain", 1, "pretrain --model proberta --config missing.json --out run", {}),
    ("pretrain", 1, f"pretrain --model proberta --config {PR_PT} --tokenizer repo/tests/fixtures/proberta/dict.txt --data missing.tsv --out run --quiet", {}),
    ("pretrain", 2, f"pretrain --model proteinbert --config {PR_PT} --out run", {}),
    ("pretrain", 2, f"pretrain --model proberta --config {PR_PT} --tokenizer pb --data {S}/swissprot_sample300.tsv --out run --quiet", {}),
    ("pretrain", 3, "pretrain --model proberta --config typo_required.json --out run", {}),
    ("pretrain", 3, "pretrain --model proberta --config typo_optional.json --out run", {}),
    ("pretrain", 3, "pretrain --model proberta --config typo_model.json --out run", {}),
    ("pretrain", 3, "pretrain --model proteinbert --config typo_pb_model.json --out run", {}),
    ("pretrain", 4, "pretrain --model proberta --config negative.json --out run", {}),
    ("pretrain", 4, "pretrain --model proberta --config zero.json --out run", {}),
    ("pretrain", 4, "pretrain --model proteinbert --config probability.json --out run", {}),
    ("pretrain", 7, f"pretrain --model proberta --config {PR_PT} --tokenizer repo/tests/fixtures/proberta/dict.txt --data lower.tsv --out run_lower --quiet", {"show": "file", "file": "run_lower/data.json", "key": "records_read"}),
    ("pretrain", 8, f"pretrain --model proberta --config {PR_PT} --out afile", {}),
    ("finetune", 1, f"finetune --model proberta --task family --data missing.tsv --from pr --config {PR_FT} --out run", {}),
    ("finetune", 1, "finetune --model proberta --task family --from pr --config missing.json --out run", {}),
    ("finetune", 2, f"finetune --model proteinbert --task signalP_binary --from pr --config {PB_FT} --out run --quiet", {}),
    ("finetune", 2, f"finetune --model proberta --task family --data {S}/human_pfam_single_sample.tsv --from pb --config {PR_FT} --out run --quiet", {}),
    ("finetune", 3, f"finetune --model proberta --task family --from pr --config ft_flat.json --out run", {}),
    ("finetune", 3, f"finetune --model proberta --task family --from pr --config ft_nested.json --out run", {}),
    ("finetune", 3, "finetune --model proteinbert --task signalP_binary --config ft_stage.json --out run", {}),
    ("finetune", 4, "finetune --model proberta --task family --from pr --config ft_fraction.json --out run", {}),
    ("finetune", 4, "finetune --model proberta --task family --from pr --config ft_ratio.json --out run", {}),
    ("finetune", 4, "finetune --model proteinbert --task signalP_binary --config ft_batch.json --out run", {}),
    ("finetune", 5, f"finetune --model proteinbert --task fluorescence --config {PB_FT} --out run", {}),
    ("finetune", 6, f"finetune --model proberta --task family --data header_only.tsv --from pr --config {PR_FT} --out run", {}),
    ("finetune", 6, f"finetune --model proteinbert --task stability --config {PB_FT} --out run", {}),
    ("finetune", 8, f"finetune --model proteinbert --task signalP_binary --config {PB_FT} --out afile", {}),
    ("finetune", 1, "finetune --model proteinbert --task ppi --data missing.tsv --sequences repo/datasets/samples/pipr_yeast_sample/protein.dictionary.tsv --config ppi_own.json --out run", {}),
    ("finetune", 2, f"finetune --model proteinbert --task ppi {YEAST} --from pr --config ppi_own.json --out run --quiet", {}),
    ("finetune", 3, f"finetune --model proteinbert --task ppi {YEAST} --config {PB_FT} --out run", {}),
    ("finetune", 3, f"finetune --model proteinbert --task ppi {YEAST} --config ppi_typo.json --out run", {}),
    ("finetune", 3, f"finetune --model proteinbert --task ppi {YEAST} --config ppi_pair.json --out run", {}),
    ("finetune", 4, f"finetune --model proteinbert --task ppi {YEAST} --config ppi_fraction.json --out run", {}),
    ("finetune", 4, f"finetune --model proteinbert --task ppi {YEAST} --config {PB_PPI} --out run", {}),
    ("finetune", 5, "finetune --model proteinbert --task ppi --data nan_pairs.tsv --sequences repo/datasets/samples/pipr_yeast_sample/protein.dictionary.tsv --config ppi_own.json --out run", {}),
]


def run_case(d: Path, args: str, opts: dict):
    argv = [str(BIN), *shlex.split(args)]
    env = dict(os.environ, PROTEIN_LM_DATA=str(d / "data"))
    if opts.get(FULL):
        argv = ["sh", "-c", "ulimit -f 1; trap '' XFSZ; exec \"$@\"", "sh", *argv]
    p = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=300)
    assert "panicked" not in p.stderr, (args, p.stderr)
    show = opts.get("show", "error")
    if show == "error":
        assert p.returncode != 0, (args, p.stdout, p.stderr)
        text = "\n".join(l for l in p.stderr.splitlines() if l.startswith(("error:", "note:")))
    elif show == "file":
        assert p.returncode == 0, (args, p.stderr)
        value = json.loads((d / opts["file"]).read_text())[opts["key"]]
        text = f"$ jq .{opts['key']} {opts['file']}\n{json.dumps(value)}"
    elif show == "stdout":
        assert p.returncode == 0, (args, p.stderr)
        text = "\n".join(l for l in p.stdout.splitlines() if "lowercase" in l)
    else:
        assert p.returncode == 0, (args, p.stderr)
        text = (p.stderr + p.stdout).rstrip()
    text = text.replace(str(d) + "/", "").replace(str(REPO) + "/", "repo/")
    if "list" in opts:
        left = sorted(os.listdir(d / opts["list"]))
        text += f"\n$ ls {opts['list']}/\n" + ("\n".join(left) if left else "(empty)")
    return text


def main():
    out = [
        "# Errors the command line reports",
        "",
        "Every case below is a real run of `protein-lm` (`python3 scripts/error_catalogue.py` regenerates",
        "this file from the debug build) in a scratch directory: `repo/` is the repository, `pb`/`pr` are",
        "tiny ProteinBERT/PRoBERTa model directories from `protein-lm init`, `afile` is a plain file, and",
        "`PROTEIN_LM_DATA` points at `data/` with tiny benchmark CSVs. A full disk is simulated with",
        "`ulimit -f 1` (writes past 512 bytes fail with EFBIG) or `/dev/full`; `/sys` stands for a read-only",
        "directory (the runs were made as root, whom a 0555 directory does not stop). tests/cli_bad_input.rs",
        "asserts the same messages.",
        "",
        "Cases: " + "; ".join(f"{k}. {v}" for k, v in CASES.items()) + ".",
        "",
        "Config files are read strictly (`src/config.rs`): a key the config type does not have is an error",
        "naming the file, the line, the key's path and the nearest valid key, in nested, flattened and",
        "tagged sections alike; a misspelt required key is reported as missing with the spelling found.",
        "Out-of-range values are checked before any data are read, naming the key.",
    ]
    with tempfile.TemporaryDirectory(prefix="protein-lm-errors-") as tmp:
        d = Path(tmp)
        setup(d)
        section = None
        for sub, case, args, opts in RUNS:
            if sub != section:
                out += ["", f"## {sub}", ""]
                section = sub
            text = run_case(d, args, opts)
            out += [f"{case}. {CASES[case]}", "", "```", f"$ protein-lm {args}", text, "```", ""]
    (REPO / "docs").mkdir(exist_ok=True)
    (REPO / "docs/errors.md").write_text("\n".join(out).rstrip() + "\n")
    print(f"wrote {REPO / 'docs/errors.md'} ({len(RUNS)} cases)")


if __name__ == "__main__":
    main()
