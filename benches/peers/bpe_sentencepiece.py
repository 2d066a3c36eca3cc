#!/usr/bin/env python3
"""Compare protein-lm's BPE with Python SentencePiece trained on the same proteins with the same options.

Usage (from the repository root):
    benches/peers/setup_venv.sh                      # once: benches/peers/.venv with sentencepiece
    protein-lm tokenizer train --input SAMPLE --out runs/bpe50k
    benches/peers/.venv/bin/python benches/peers/bpe_sentencepiece.py \
        --input SAMPLE --ours runs/bpe50k --original-dict ../shared/datasets/proberta-vocab/dict.txt \
        --out runs/bpe50k/sentencepiece_comparison.json --protein-lm target/release/protein-lm

SentencePiece options are the PRoBERTa reference's (tokenizer.py): model_type=bpe, vocab_size=10000,
character_coverage=1.0, max_sentence_length=1024 (bytes; proteins are pre-filtered to < 1,024 residues),
everything else default (add_dummy_prefix, max_sentencepiece_length 16).
"""
import argparse
import gzip
import json
import os
import subprocess
import tempfile
import time

import sentencepiece as spm


def read_sequences(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = header.index("sequence")
        for line in f:
            yield line.rstrip("\n").split("\t")[col]


def read_dict(path):
    pieces = {}
    with open(path) as f:
        for line in f:
            piece, count = line.rstrip("\n").rsplit(" ", 1)
            if not piece.startswith("madeupword"):
                pieces[piece] = int(count)
    return pieces


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--ours", required=True, help="directory with our dict.txt")
    ap.add_argument("--original-dict", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--protein-lm", help="path of the protein-lm binary, to compare segmentations")
    a = ap.parse_args()

    seqs = [s for s in read_sequences(a.input) if len(s) < 1024]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(seqs) + "\n")
        t0 = time.time()
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(tmp, "m"), model_type="bpe", vocab_size=10000,
            character_coverage=1.0, max_sentence_length=1024, num_threads=a.threads, minloglevel=2,
        )
        sp_seconds = time.time() - t0
        sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "m.model"))

    sp_pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())} - {"<unk>", "<s>", "</s>"}
    encoded = [sp.encode_as_pieces(s) for s in seqs]
    n_pieces = sum(len(e) for e in encoded)
    residues = sum(len(s) for s in seqs)
    ours = read_dict(os.path.join(a.ours, "dict.txt"))
    original = read_dict(a.original_dict)
    ours_set, orig_set = set(ours), set(original)

    # Segmentation agreement on the first 2,000 proteins: identical piece lists, and shared cut points.
    agreement = None
    if a.protein_lm:
        tmp = tempfile.mkdtemp()
        fasta, ours_pieces_file = os.path.join(tmp, "s.fasta"), os.path.join(tmp, "pieces.tsv")
        with open(fasta, "w") as f:
            for i, s in enumerate(seqs[:2000]):
                f.write(f">p{i}\n{s}\n")
        subprocess.run([a.protein_lm, "tokenizer", "encode", "--tokenizer", a.ours, "--input", fasta,
                        "--pieces", "--truncation", "none", "--out", ours_pieces_file], check=True)
        ours_seg = {}
        with open(ours_pieces_file) as f:
            for i, line in enumerate(f):
                ours_seg[i] = line.rstrip("\n").split("\t")[1].split(" ")[1:-1]  # drop <s> and </s>
        same, cuts, shared = 0, 0, 0
        for i, s in enumerate(seqs[: len(ours_seg)]):
            a_p, b_p = ours_seg[i], encoded[i]
            same += a_p == b_p
            def bounds(p):
                acc, out = 0, set()
                for x in p:
                    acc += len(x)
                    out.add(acc)
                return out
            ba, bb = bounds(a_p), bounds(b_p)
            cuts += max(len(ba), len(bb))
            shared += len(ba & bb)
        agreement = {"proteins": len(ours_seg), "identical_segmentation": same / len(ours_seg),
                     "shared_piece_boundaries": shared / cuts}

    result = {
        "training_sequences": len(seqs),
        "sentencepiece_version": spm.__version__,
        "sentencepiece_train_seconds": sp_seconds,
        "sentencepiece_pieces": len(sp_pieces),
        "sentencepiece_residues_per_piece": residues / n_pieces,  # the '▁' counts as a piece character
        "ours_pieces": len(ours_set),
        "overlap_ours_sentencepiece": len(ours_set & sp_pieces),
        "overlap_ours_sentencepiece_fraction": len(ours_set & sp_pieces) / len(sp_pieces),
        "overlap_ours_original_dict": len(ours_set & orig_set),
        "overlap_ours_original_dict_fraction": len(ours_set & orig_set) / len(orig_set),
        "overlap_sentencepiece_original_dict": len(sp_pieces & orig_set),
        "overlap_sentencepiece_original_dict_fraction": len(sp_pieces & orig_set) / len(orig_set),
        "original_dict_pieces": len(orig_set),
        "segmentation_agreement_ours_vs_sentencepiece": agreement,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
