"""TensorFlow peer of the peers runner (benches/peers/run.sh): the reference ProteinBERT (protein-bert 1.0.1, Keras on
TF 2.15, the environment of ../shared/specs/proteinbert.md) doing the same work as `cargo bench --bench peers` and
`protein-lm embed`, one measurement per call, one JSON line in the runner's format.

    tests/fixtures/proteinbert/.venv/bin/python benches/peers/proteinbert_peer.py <measurement> [--reps N] [--json]

| measurement | what one repeat is |
|---|---|
| proteinbert-forward | the reference `create_model(512, 26, 8943)` (released size), random weights, 32 x 512 random tokens, all-zero annotations, `predict_on_batch` (token and GO probabilities) |
| proteinbert-train-step | one pretraining update as the reference's `ModelTrainer` does it: the reference's own noise (`EpochGenerator._encode_epoch`: 5 % tokens, GO positives dropped 25 %, negatives added 1e-4, all withheld 50 %) on 32 proteins of 510 random standard residues with 10 GO terms each, then `train_on_batch` with its losses (sparse categorical + binary cross-entropy, weight 1) and sample weights; optimizer: the pretraining script's tensorflow-addons LAMB, lr 2e-4 (spec §3; compiled here because protein-bert 1.0.1 passes `lr=`, which TF 2.15 drops) |
| matmul-narrow-dense, matmul-narrow-conv | tf.matmul 16,384 x 128 @ 128 x 128 (32 per repeat) and 16,384 x 1,152 @ 1,152 x 128 (4 per repeat); seconds per product |
| matmul-limit | tf.matmul 4,096 x 768 @ 768 x 3,072 (the torch peer's row; here for reference) |
| embed-proteinbert | end to end from FASTA, after the imports: read our model directory's weights into the reference model (name map of src/models/proteinbert/import.rs, inverted), pad each protein as the reference does to the smallest of 512, 1,024, 2,048, … that fits, one Keras model per length (the reference builds one per seq_len), batches of 16,384 // length rows, the reference's per-protein representation (`get_model_with_hidden_layers_as_outputs`' global concatenation, 15,599 wide; the per-residue one is not built, as `protein-lm embed --pooling global` does not), write .npy + .ids.txt |

Threads: OMP_NUM_THREADS (the runner sets 2) and TF's intra-op and inter-op pools set to the same number.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MEASUREMENTS = ["proteinbert-forward", "proteinbert-train-step", "matmul-limit", "matmul-narrow-dense",
                "matmul-narrow-conv", "embed-proteinbert"]
args = common.parse_args(MEASUREMENTS)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")
try:
    import numpy as np
    import tensorflow as tf
    import proteinbert  # noqa: F401
except ImportError as e:
    sys.exit("proteinbert_peer.py: %s. It runs in the reference venv: tests/fixtures/proteinbert/setup_venv.sh, then "
             "tests/fixtures/proteinbert/.venv/bin/python benches/peers/proteinbert_peer.py" % e)

tf.config.threading.set_intra_op_parallelism_threads(common.threads())
tf.config.threading.set_inter_op_parallelism_threads(common.threads())
from tensorflow import keras  # noqa: E402
import importlib.metadata as md  # noqa: E402
from proteinbert import conv_and_global_attention_model as cgam  # noqa: E402
from proteinbert.model_generation import InputEncoder  # noqa: E402
from proteinbert.pretraining import EpochGenerator  # noqa: E402
from proteinbert.tokenization import additional_token_to_index, n_tokens  # noqa: E402

IMPL = "TensorFlow %s + protein-bert %s" % (tf.__version__, md.version("protein-bert"))
N_ANNOTATIONS, BATCH, LEN = 8943, 32, 512
GO_TERMS_PER_PROTEIN = 10
STANDARD_RESIDUES = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 21])  # no U, X


def proteinbert_forward():
    model = cgam.create_model(LEN, n_tokens, N_ANNOTATIONS)
    rs = np.random.RandomState(0)
    X = [rs.randint(0, n_tokens, size=(BATCH, LEN)).astype(np.int32), np.zeros((BATCH, N_ANNOTATIONS), np.float32)]

    def forward():
        tokens, annotations = model.predict_on_batch(X)
        assert tokens.shape == (BATCH, LEN, n_tokens) and annotations.shape == (BATCH, N_ANNOTATIONS)

    return common.time_calls(args.warmup, args.reps, forward), dict(
        batch=BATCH, len=LEN, what="token + GO probabilities, zero annotations (predict_on_batch)")


def proteinbert_train_step():
    import tensorflow_addons as tfa
    model = cgam.create_model(LEN, n_tokens, N_ANNOTATIONS)
    # The reference's PretrainingModelGenerator.create_model compile, with the pretraining script's optimizer.
    model.compile(optimizer=tfa.optimizers.LAMB(learning_rate=2e-4),
                  loss=["sparse_categorical_crossentropy", "binary_crossentropy"], loss_weights=[1, 1])
    epochs = EpochGenerator(episode_settings=[(LEN, BATCH)])
    np.random.seed(0)
    rs = np.random.RandomState(1)

    def update():
        seqs = np.full((BATCH, LEN), additional_token_to_index["<PAD>"], dtype=np.int8)
        seqs[:, 0], seqs[:, -1] = additional_token_to_index["<START>"], additional_token_to_index["<END>"]
        seqs[:, 1:-1] = STANDARD_RESIDUES[rs.randint(0, 20, size=(BATCH, LEN - 2))]
        annotations = np.zeros((BATCH, N_ANNOTATIONS), dtype=bool)
        for row in annotations:
            row[rs.choice(N_ANNOTATIONS, GO_TERMS_PER_PROTEIN, replace=False)] = True
        X, Y, weights = epochs._encode_epoch(seqs, annotations)
        model.train_on_batch(X, Y, sample_weight=weights)

    return common.time_calls(args.warmup, args.reps, update), dict(
        batch=BATCH, len=LEN, optimizer="tensorflow-addons LAMB", go_terms_per_protein=GO_TERMS_PER_PROTEIN)


MATMUL = {"matmul-limit": (4096, 768, 3072, 4), "matmul-narrow-dense": (16_384, 128, 128, 32),
          "matmul-narrow-conv": (16_384, 1152, 128, 4)}


def matmul():
    m, k, n, calls = MATMUL[args.measurement]
    rs = np.random.RandomState(3)
    a = tf.constant(rs.uniform(-1, 1, (m, k)).astype(np.float32))
    b = tf.constant(rs.uniform(-1, 1, (k, n)).astype(np.float32))

    def products():
        for _ in range(calls):
            c = tf.matmul(a, b)
        c.numpy()  # wait for the last one (eager ops run in order)

    seconds = common.time_calls(max(args.warmup, 1), args.reps, products)
    return [s / calls for s in seconds], dict(m=m, k=k, n=n, flops=2 * m * k * n, calls_per_repeat=calls)


# Our parameter names per Keras array (src/models/proteinbert/import.rs) and how the array is laid out there.
BLOCK = {
    "global-to-seq-dense": "global_to_local", "narrow-conv": "narrow_conv", "wide-conv": "wide_conv",
    "seq-merge1-norm": "local_norm1", "seq-dense": "local_dense", "seq-merge2-norm": "local_norm2",
    "global-dense1": "global_dense1", "global-attention": "attention", "global-merge1-norm": "global_norm1",
    "global-dense2": "global_dense2", "global-merge2-norm": "global_norm2",
}
TOP = {"dense-global-input": "global_input", "embedding-seq-input": "embedding", "output-seq": "token_head",
       "output-annotations": "annotation_head"}


def keras_array(ours, variable_name):
    """The Keras array `variable_name` (e.g. 'narrow-conv-block1/kernel:0') from our tensors."""
    layer, weight = variable_name.split(":")[0].split("/")
    if "-block" in layer:
        base, b = layer.rsplit("-block", 1)
        prefix = "blocks.%d.%s" % (int(b) - 1, BLOCK[base])
    else:
        prefix = TOP[layer]
    if weight in ("Wq", "Wk", "Wv"):
        return ours["%s.%s" % (prefix, weight.lower())]
    name = {"kernel": "weight", "embeddings": "weight", "gamma": "weight", "bias": "bias", "beta": "bias"}[weight]
    a = ours["%s.%s" % (prefix, name)]
    if weight == "kernel":
        return a.transpose(2, 1, 0) if a.ndim == 3 else a.T  # (out, in, k) -> (k, in, out); (out, in) -> (in, out)
    return a


def embed_proteinbert():
    import json
    import time
    from safetensors.numpy import load_file
    t0 = time.perf_counter()
    with open(os.path.join(args.model, "config.json")) as f:
        c = json.load(f)["model"]
    n_annotations = c["n_annotations"]
    ours = load_file(os.path.join(args.model, "model.safetensors"))
    records = common.read_fasta(args.fasta)
    seqs = [s for _, s in records]
    fixed = []
    for s in seqs:  # the reference's bucket: 512, 1,024, 2,048, … (START + residues + END must fit)
        n = 512
        while n < len(s) + 2:
            n *= 2
        fixed.append(n)
    encoder = InputEncoder(n_annotations)
    out, models, weights = None, {}, None
    for rows in common.batches([len(s) + 2 for s in seqs], fixed=fixed):
        seq_len = fixed[rows[0]]
        if seq_len not in models:
            keras.backend.clear_session()
            model = cgam.create_model(seq_len, n_tokens, n_annotations, d_hidden_seq=c["d_local"],
                                      d_hidden_global=c["d_global"], n_blocks=c["n_blocks"], n_heads=c["n_heads"],
                                      d_key=c["d_key"], conv_kernel_size=c["conv_kernel_size"],
                                      wide_conv_dilation_rate=c["wide_conv_dilation"])
            if weights is None:
                weights = [keras_array(ours, v.name) for v in model.weights]
            model.set_weights(weights)
            # get_model_with_hidden_layers_as_outputs, global part only.
            glob = [layer.output for layer in model.layers if len(layer.output.shape) == 2 and (
                layer.name in ["input_annoatations", "dense-global-input", "output-annotations"]
                or isinstance(layer, keras.layers.LayerNormalization))]
            models.clear()
            models[seq_len] = keras.models.Model(inputs=model.inputs,
                                                 outputs=keras.layers.Concatenate(name="all-global-layers")(glob))
        X = encoder.encode_X([seqs[i] for i in rows], seq_len)
        vectors = models[seq_len].predict_on_batch(X)
        if out is None:
            out = np.zeros((len(seqs), vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors
    np.save(args.out, out)
    common.write_ids(args.out, [r[0] for r in records])
    seconds = time.perf_counter() - t0
    return [seconds], dict(proteins=len(records), padded_tokens=sum(fixed), pooling="global",
                           what="after imports: weights, FASTA, one model per length, forward, .npy")


def main():
    if args.measurement == "embed-proteinbert":
        args.warmup = 0  # one end-to-end run per call; the runner repeats calls
        seconds, detail = embed_proteinbert()
    elif args.measurement == "proteinbert-forward":
        seconds, detail = proteinbert_forward()
    elif args.measurement == "proteinbert-train-step":
        seconds, detail = proteinbert_train_step()
    else:
        seconds, detail = matmul()
    common.report(args, IMPL, seconds, detail)


if __name__ == "__main__":
    main()
