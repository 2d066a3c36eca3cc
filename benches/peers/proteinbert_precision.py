"""Keras' side of the ProteinBERT precision table (`cargo bench --bench precision`, issue 15): the reference model
(protein-bert 1.0.1 on TF 2.15) at the released size with every weight random, run in float32 by Keras and in float64
by the independent numpy transcription of the spec (`numpy_forward` of tests/fixtures/proteinbert/make_fixtures.py),
on the same weights and inputs at several lengths. Writes everything the Rust bench needs to compare our forward on
the same weights:

    tests/fixtures/proteinbert/.venv/bin/python benches/peers/proteinbert_precision.py [--out DIR] [--lengths 512,...]

DIR (default target/precision/proteinbert, git-ignored) gets
  weights.pkl                   the released checkpoint format, `(n_annotations, model.get_weights(), [])`, protocol 3
                                as the released file (the optimizer state is left empty: the crate's importer skips it)
  L{L}.tokens.npy               (B, L) uint32 token ids (START, random residues, END, PAD)
  L{L}.annotations.npy          (B, 8943) float32 random 0/1 GO input at a low rate
  L{L}.keras_tokens.npy         (B, L, 26) float32 Keras token probabilities
  L{L}.keras_annotations.npy    (B, 8943) float32 Keras annotation probabilities
  L{L}.numpy_tokens.npy         (B, L, 26) float64 numpy_forward token probabilities
  L{L}.numpy_annotations.npy    (B, 8943) float64 numpy_forward annotation probabilities
  meta.json                     lengths run, lengths skipped (and why), versions, Keras' max |f32 - float64|

The weights do not depend on the length: one set (fixed seed, `randomised_weights` of make_fixtures.py) is built
once and set into a model created at each length. Threads: OMP_NUM_THREADS (default 2) for TF's pools.
"""
import argparse
import json
import os
import pickle
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "proteinbert")
sys.path.insert(0, FIXTURES)
try:
    import numpy as np
    import tensorflow as tf
    import importlib.metadata as md
    from proteinbert import conv_and_global_attention_model as cgam
    from proteinbert.tokenization import ALL_AAS, n_tokens
    from proteinbert.model_generation import tokenize_seqs
    import make_fixtures as mf  # numpy_forward, randomised_weights, weight_key, expected_weight_order
except ImportError as e:
    sys.exit("proteinbert_precision.py: %s. It runs in the reference venv: bash tests/fixtures/proteinbert/setup_venv.sh,"
             " then tests/fixtures/proteinbert/.venv/bin/python benches/peers/proteinbert_precision.py" % e)

SEED = 20240515
N_ANNOTATIONS, BATCH, N_BLOCKS, EPS, DILATION = 8943, 2, 6, 1e-3, 5
ANNOTATION_RATE = 0.002  # about 18 GO terms per protein
STANDARD = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard residues


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(ROOT, "target", "precision", "proteinbert"))
    p.add_argument("--lengths", default="512,1024,2048,8192")
    a = p.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    os.makedirs(a.out, exist_ok=True)
    for name in os.listdir(a.out):  # a stale set from an earlier run must not be compared with new weights
        if name.endswith(".npy") or name in ("weights.pkl", "meta.json"):
            os.remove(os.path.join(a.out, name))
    assert mf.CONFIG["wide_conv_dilation"] == DILATION  # numpy_forward reads it from there

    # One set of weights, the released sizes (create_model's defaults), every array random.
    model = cgam.create_model(lengths[0], n_tokens, N_ANNOTATIONS)
    names = [mf.weight_key(v) for v in model.weights]
    assert names == mf.expected_weight_order(N_BLOCKS), names
    weights = mf.randomised_weights(model, np.random.default_rng(SEED))
    n_params = sum(w.size for w in weights)
    assert n_params == 15_981_321, n_params
    with open(os.path.join(a.out, "weights.pkl"), "wb") as f:
        pickle.dump((N_ANNOTATIONS, weights, []), f, protocol=3)
    named64 = {n: w.astype(np.float64) for n, w in zip(names, weights)}
    del model
    tf.keras.backend.clear_session()

    meta = dict(generator="benches/peers/proteinbert_precision.py", seed=SEED, batch=BATCH, parameters=n_params,
                annotation_rate=ANNOTATION_RATE, threads=threads, numpy=np.__version__, tensorflow=tf.__version__,
                protein_bert=md.version("protein-bert"), lengths=[], skipped={}, keras_vs_float64={})
    for L in lengths:
        rng = np.random.default_rng([SEED, L])
        # Protein 1 fills the length (START + L-2 residues + END); protein 2 is shorter, so PAD is in the input too.
        sizes = [L - 2, L - 2 - L // 8][:BATCH]
        seqs = ["".join(rng.choice(list(STANDARD), size=n)) for n in sizes]
        tokens = tokenize_seqs(seqs, L)
        annotations = (rng.random((BATCH, N_ANNOTATIONS)) < ANNOTATION_RATE).astype(np.float32)
        try:
            t0 = time.perf_counter()
            tf.keras.backend.clear_session()
            m = cgam.create_model(L, n_tokens, N_ANNOTATIONS)
            m.set_weights(weights)
            keras_tokens, keras_annotations = m.predict([tokens, annotations], batch_size=BATCH, verbose=0)
            t_keras = time.perf_counter() - t0
            del m
            tf.keras.backend.clear_session()
            t0 = time.perf_counter()
            ref = mf.numpy_forward(named64, tokens, annotations.astype(np.float64), N_BLOCKS, EPS)
            t_numpy = time.perf_counter() - t0
        except (MemoryError, tf.errors.ResourceExhaustedError) as e:
            meta["skipped"][str(L)] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200])
            print("L=%d: skipped (%s)" % (L, meta["skipped"][str(L)]), flush=True)
            continue
        d_tok = float(np.abs(keras_tokens.astype(np.float64) - ref["token_probs"]).max())
        d_ann = float(np.abs(keras_annotations.astype(np.float64) - ref["annotation_probs"]).max())
        meta["keras_vs_float64"][str(L)] = dict(tokens=d_tok, annotations=d_ann, keras_s=t_keras, numpy_s=t_numpy)
        meta["lengths"].append(L)
        save = lambda name, arr: np.save(os.path.join(a.out, "L%d.%s.npy" % (L, name)), np.ascontiguousarray(arr))
        save("tokens", tokens.astype(np.uint32))
        save("annotations", annotations)
        save("keras_tokens", keras_tokens.astype(np.float32))
        save("keras_annotations", keras_annotations.astype(np.float32))
        save("numpy_tokens", ref["token_probs"].astype(np.float64))
        save("numpy_annotations", ref["annotation_probs"].astype(np.float64))
        print("L=%d: Keras f32 vs numpy float64: tokens %.3g, annotations %.3g (Keras %.1f s, numpy %.1f s)"
              % (L, d_tok, d_ann, t_keras, t_numpy), flush=True)
        del ref, keras_tokens, keras_annotations
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
