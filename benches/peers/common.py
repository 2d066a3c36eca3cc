"""Helpers shared by the Python peers of the peers runner (benches/peers/run.sh): arguments, the JSON line every
measurement prints (the format `cargo bench --bench peers -- … --json` prints), FASTA reading and the length
buckets `protein-lm embed` uses. Standard library only, so both venvs (torch, TensorFlow) import it."""
import argparse
import json
import os
import sys
import time

# `protein-lm embed`'s default batch budget (src/embed/mod.rs DEFAULT_BATCH_TOKENS): padded tokens per batch.
BATCH_TOKENS = 16_384


def threads():
    """The thread count both sides use: OMP_NUM_THREADS (the runner sets 2, and RAYON_NUM_THREADS for ours)."""
    return int(os.environ.get("OMP_NUM_THREADS", "2"))


def parse_args(measurements):
    p = argparse.ArgumentParser()
    p.add_argument("measurement", choices=measurements)
    p.add_argument("--reps", type=int, default=5, help="timed repeats")
    p.add_argument("--warmup", type=int, default=None, help="untimed repeats first (default 1; train steps 2)")
    p.add_argument("--json", action="store_true", help="one JSON line (the runner's format)")
    p.add_argument("--model", help="embed: the model directory `protein-lm init` made (weights are read from it)")
    p.add_argument("--fasta", help="embed: proteins")
    p.add_argument("--out", help="embed: output .npy (one row per protein, input order); OUT.ids.txt beside it")
    a = p.parse_args()
    if a.warmup is None:
        a.warmup = 2 if a.measurement.endswith("train-step") else 1
    if a.measurement.startswith("embed") and not (a.model and a.fasta and a.out):
        p.error("%s needs --model, --fasta and --out" % a.measurement)
    return a


def time_calls(warmup, reps, f):
    for _ in range(warmup):
        f()
    seconds = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        seconds.append(time.perf_counter() - t)
    return seconds


def report(args, impl, seconds, detail):
    if args.json:
        print(json.dumps({"measurement": args.measurement, "side": "peer", "impl": impl, "threads": threads(),
                          "warmup": args.warmup, "seconds": seconds, "detail": detail}), flush=True)
    else:
        s = sorted(seconds)
        print("%s (%s): median %.4f s over %d repeats (min %.4f, max %.4f), %d threads; %s" % (
            args.measurement, impl, s[len(s) // 2], len(s), s[0], s[-1], threads(), detail), flush=True)


def read_fasta(path):
    """(id, sequence) records of a plain FASTA file, in file order."""
    records, name, chunks = [], None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(chunks)))
                name, chunks = line[1:].split()[0], []
            elif line:
                chunks.append(line)
    if name is not None:
        records.append((name, "".join(chunks)))
    if not records:
        sys.exit("%s: no FASTA records" % path)
    return records


def write_ids(out, ids):
    """OUT.ids.txt beside OUT.npy, as `protein-lm embed` writes it."""
    base = out[:-4] if out.endswith(".npy") else out
    with open(base + ".ids.txt", "w") as f:
        f.writelines(i + "\n" for i in ids)


def batches(lengths, budget=BATCH_TOKENS, attention_budget=None, fixed=None):
    """`protein-lm embed`'s batching (src/embed/embedder.rs `batches`): indices sorted by (fixed length, length),
    cut greedily so rows × padded length stays within `budget` and, for PRoBERTa, rows × padded length² within
    `attention_budget`; a new batch at every change of fixed length."""
    key = (lambda i: fixed[i]) if fixed is not None else (lambda i: None)
    order = sorted(range(len(lengths)), key=lambda i: (key(i) or 0, lengths[i]))
    out, current, current_key, longest = [], [], None, 0
    for i in order:
        k = key(i)
        n = k if k is not None else lengths[i]
        padded = max(longest, n)
        over_attention = attention_budget is not None and (len(current) + 1) * padded * padded > attention_budget
        if current and (k != current_key or (len(current) + 1) * padded > budget or over_attention):
            out.append(current)
            current, longest = [], 0
        current_key = k
        longest = max(longest, n)
        current.append(i)
    if current:
        out.append(current)
    return out
