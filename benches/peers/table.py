"""The peers runner's table (benches/peers/run.sh): reads the JSON lines both sides printed (one per call, with the
round the runner added) and prints markdown: medians, ratios, model FLOP rates against the measured
matrix-product limit, and training peak memory.

    python3 benches/peers/table.py RESULTS.jsonl

Standard library only. Every number is a median: a side's value is the median of all its timed repeats over
all rounds; the ratio is the median over rounds of (peer's median in that round / ours in that round), so
> 1 means protein-lm is faster (for GFLOP/s rows the same ratio: our rate / the peer's).

FLOP counts (multiply-add = 2 FLOPs; matrix products only: biases, activations, norms, softmax and the
optimiser are left out, as usual for model FLOPs):

PRoBERTa, N = 5 layers, H = 768, F = 3,072, V = 10,009, batch B x L = 8 x 512, T = B·L tokens:
    encoder      = T · N · (2·(4H² + 2HF)  +  2·2·L·H)
                   (Q, K, V and output projections 4H², the FFN 2HF, per token; QKᵀ and attention·V
                    2·L·H each per token and layer)
    LM head      = 2H² + 2HV per position (dense, then the tied output matrix)
    forward      = encoder + T · (2H² + 2HV)              (logits at every position)
    train step   = 3 · (encoder + 0.15·T · (2H² + 2HV))  (backward ≈ 2 x forward; LM head at the masked 15 %)
ProteinBERT, D = 128 local, G = 512 global, k = 9, n = 6 blocks, h = 4 heads, d_key = 64, d_value = G/h = 128,
26 tokens, A = 8,943 GO terms, T = B·L = 32 x 512:
    per token    = n · (2·2·k·D² [narrow + wide conv]  +  2D² [seq dense]  +  2·h·D·d_key [keys]
                        + 2·h·D·d_value [values]  +  2·h·d_key + 2·h·d_value [scores, weighted sum])
                   + 2·D·26 [output-seq]
    per protein  = 2·A·G [dense-global-input]  +  n · (2·G·D + 2·2·G² + 2·h·G·d_key)  +  2·G·A [output-annotations]
    forward      = T · per token + B · per protein
    train step   = 3 · forward
Limits: the matrix-product limit is the machine's, the better of the two sides at that shape
(matmul-limit: candle vs torch.mm; matmul-narrow-*: candle vs tf.matmul). PRoBERTa's % of limit is its model
FLOP rate over the matmul-limit rate. ProteinBERT's limit is its own shapes' limit weighted by FLOPs: the convolutions
at the matmul-narrow-conv rate (16,384 x 1,152 @ 1,152 x 128, the 9 taps as one product), everything else at the
matmul-narrow-dense rate (16,384 x 128 @ 128 x 128): limit = F / (F_conv / R_conv + F_rest / R_dense).
"""
import json
import statistics
import sys
from collections import defaultdict

# PRoBERTa
N, H, FF, V, PB, PL = 5, 768, 3072, 10_009, 8, 512
T = PB * PL
ENCODER = T * N * (2 * (4 * H * H + 2 * H * FF) + 2 * 2 * PL * H)
LM_HEAD = 2 * H * H + 2 * H * V
PROBERTA_FORWARD = ENCODER + T * LM_HEAD
PROBERTA_TRAIN = 3 * (ENCODER + 0.15 * T * LM_HEAD)
# ProteinBERT
D, G, K, NB, NH, DK, A, VT, BB, BL = 128, 512, 9, 6, 4, 64, 8943, 26, 32, 512
DVAL = G // NH
TB = BB * BL
CONV_PER_TOKEN = NB * 2 * 2 * K * D * D
PER_TOKEN = CONV_PER_TOKEN + NB * (2 * D * D + 2 * NH * D * DK + 2 * NH * D * DVAL + 2 * NH * DK + 2 * NH * DVAL) \
    + 2 * D * VT
PER_PROTEIN = 2 * A * G + NB * (2 * G * D + 2 * 2 * G * G + 2 * NH * G * DK) + 2 * G * A
PROTEINBERT_FORWARD = TB * PER_TOKEN + BB * PER_PROTEIN
PROTEINBERT_CONV = TB * CONV_PER_TOKEN
PROTEINBERT_TRAIN = 3 * PROTEINBERT_FORWARD

# measurement -> (model FLOPs per repeat, which limit, tokens per repeat)
MODEL = {
    "proberta-forward": (PROBERTA_FORWARD, "proberta", T),
    "proberta-train-step": (PROBERTA_TRAIN, "proberta", T),
    "proteinbert-forward": (PROTEINBERT_FORWARD, "proteinbert", TB),
    "proteinbert-train-step": (PROTEINBERT_TRAIN, "proteinbert", TB),
}
ORDER = ["proberta-forward", "proberta-train-step", "proteinbert-forward", "proteinbert-train-step",
         "embed-proberta", "embed-proteinbert", "matmul-limit", "matmul-narrow-dense", "matmul-narrow-conv"]


def fmt(x, digits=3):
    return "—" if x is None else ("%.*g" % (digits, x) if abs(x) < 1000 else "{:,.0f}".format(x))


def main(path):
    records = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    seconds = defaultdict(list)                 # (measurement, side) -> all timed repeats
    per_round = defaultdict(dict)               # measurement -> {(round, side): median}
    rss = defaultdict(list)                     # (measurement, side) -> max RSS kB per call
    impl, detail = {}, {}
    process = defaultdict(list)                 # (measurement, side) -> whole-process seconds per call
    for r in records:
        if "seconds" not in r:
            continue
        key = (r["measurement"], r["side"])
        seconds[key].extend(r["seconds"])
        per_round[r["measurement"]][(r.get("round", 0), r["side"])] = statistics.median(r["seconds"])
        if r.get("max_rss_kb"):
            rss[key].append(r["max_rss_kb"])
        if r.get("process_seconds"):
            process[key].append(r["process_seconds"])
        impl[key] = r.get("impl", "")
        detail[key] = r.get("detail", {})

    def med(m, side):
        s = seconds.get((m, side))
        return statistics.median(s) if s else None

    def ratio(m):
        rounds = per_round[m]
        rs = [rounds[(k, "peer")] / rounds[(k, "protein-lm")] for (k, side) in rounds
              if side == "protein-lm" and (k, "peer") in rounds]
        return statistics.median(rs) if rs else None

    def gflops(m, side):
        t = med(m, side)
        flops = (detail.get((m, side)) or {}).get("flops")
        return flops / t / 1e9 if t and flops else None

    def best(m):
        rates = [x for x in (gflops(m, "protein-lm"), gflops(m, "peer")) if x]
        return max(rates) if rates else None

    limit = {"proberta": best("matmul-limit")}
    dense, conv = best("matmul-narrow-dense"), best("matmul-narrow-conv")
    limit["proteinbert"] = (PROTEINBERT_FORWARD / ((PROTEINBERT_CONV / conv + (PROTEINBERT_FORWARD - PROTEINBERT_CONV)
                                                    / dense))) if dense and conv else None

    out = ["| measurement | protein-lm | peer | ratio (peer s / our s; > 1: we are faster) | units | protein-lm "
           "GFLOP/s (% of limit) | peer GFLOP/s (% of limit) | peer |",
           "|---|---|---|---|---|---|---|---|"]
    for m in ORDER + sorted({k[0] for k in seconds} - set(ORDER)):
        if not any(k[0] == m for k in seconds):
            continue
        ours, theirs = med(m, "protein-lm"), med(m, "peer")
        peer_impl = impl.get((m, "peer"), "")
        if m.startswith("matmul"):
            d = detail.get((m, "protein-lm")) or detail.get((m, "peer")) or {}
            shape = "%d×%d @ %d×%d" % (d.get("m", 0), d.get("k", 0), d.get("k", 0), d.get("n", 0))
            out.append("| %s (%s) | %s | %s | %s | GFLOP/s | | | %s |" % (
                m, shape, fmt(gflops(m, "protein-lm")), fmt(gflops(m, "peer")), fmt(ratio(m)), peer_impl))
            continue
        cells = []
        if m in MODEL:
            flops, which, tokens = MODEL[m]
            units = "s per batch (%s tokens)" % "{:,}".format(tokens)
            for t in (ours, theirs):
                if t is None or limit.get(which) is None:
                    cells.append(fmt(flops / t / 1e9) if t else "—")
                else:
                    rate = flops / t / 1e9
                    cells.append("%s (%.0f %%)" % (fmt(rate), 100 * rate / limit[which]))
        else:
            d = detail.get((m, "peer")) or {}
            units = "s end to end (%s proteins)" % d.get("proteins", "?")
            cells = ["", ""]
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            m, fmt(ours), fmt(theirs), fmt(ratio(m)), units, cells[0], cells[1], peer_impl))
    out.append("")
    out.append("Limits (best of both sides at the shape): PRoBERTa %s GFLOP/s (matmul-limit); ProteinBERT %s GFLOP/s "
               "(its shapes, FLOP-weighted). Model FLOPs per batch: PRoBERTa forward %.1f G, train step %.1f G; "
               "ProteinBERT forward %.1f G (convolutions %.0f %%), train step %.1f G (formulas: benches/peers/table.py)."
               % (fmt(limit["proberta"]), fmt(limit["proteinbert"]), PROBERTA_FORWARD / 1e9, PROBERTA_TRAIN / 1e9,
                  PROTEINBERT_FORWARD / 1e9, 100 * PROTEINBERT_CONV / PROTEINBERT_FORWARD, PROTEINBERT_TRAIN / 1e9))
    if rss:
        out += ["", "| training step, peak resident memory | protein-lm | peer | peer / protein-lm (> 1: we use less) |",
                "|---|---|---|---|"]
        for m in ORDER:
            a, b = rss.get((m, "protein-lm")), rss.get((m, "peer"))
            if a or b:
                ga = max(a) / 1024 ** 2 if a else None
                gb = max(b) / 1024 ** 2 if b else None
                out.append("| %s | %s GiB | %s GiB | %s |" % (m, fmt(ga), fmt(gb), fmt(gb / ga) if ga and gb else "—"))
        out.append("")
        out.append("Maximum resident set size of the whole process (`/usr/bin/time -v`), the largest over its calls.")
    whole = ["%s: protein-lm %s s, peer %s s" % (m, fmt(statistics.median(process[(m, "protein-lm")])),
                                                 fmt(statistics.median(process[(m, "peer")])))
             for m in ORDER if m.startswith("embed") and process.get((m, "protein-lm")) and process.get((m, "peer"))]
    if whole:
        out += ["", "Embedding: the peers' times above start after their imports (torch, TensorFlow); whole processes, "
                "imports included: " + "; ".join(whole) + "."]
    checks = [r for r in records if r.get("check")]
    if checks:
        out += ["", "Same work, checked: " + "; ".join(r["check"] for r in checks)]
    n_rounds = {m: len({k for (k, s) in per_round[m]}) for m in per_round}
    out += ["", "Rounds (ours and the peer's calls alternated, order swapped every round): " +
            ", ".join("%s %d" % (m, n_rounds[m]) for m in ORDER if m in n_rounds) + "."]
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
