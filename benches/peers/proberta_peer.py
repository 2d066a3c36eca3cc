"""PyTorch + transformers peer of the peers runner (benches/peers/run.sh): the same work as `cargo bench --bench peers`
and `protein-lm embed` on PRoBERTa, one measurement per call, one JSON line in the runner's format.

    tests/fixtures/proberta/.venv/bin/python benches/peers/proberta_peer.py <measurement> [--reps N] [--json]

| measurement | what one repeat is |
|---|---|
| proberta-forward | `RobertaForMaskedLM` with the paper's config (5 layers x 768, 12 heads, FFN 3,072, vocabulary 10,009, 514 positions, exact GELU, SDPA attention), random weights, batch 8 x 512 random ids, logits at every position, eval mode under `torch.inference_mode()` |
| proberta-train-step | one masked-LM update: 15 % of positions masked (80 % <mask>, 10 % random, 10 % kept, as fairseq), dropout 0.1, logits at masked positions only (as fairseq and ours; `RobertaForMaskedLM.forward` would compute all 512 x 8 and mask the loss), mean cross-entropy, backward, apex FusedLAMB (below), lr 2.5e-3 |
| matmul-limit | torch.mm 4,096 x 768 @ 768 x 3,072, 4 per repeat; seconds per product |
| matmul-narrow-dense, matmul-narrow-conv | torch.mm at ProteinBERT's shapes (the TensorFlow peer times them too) |
| embed-proberta | end to end from FASTA, after the imports: read the model directory `protein-lm init` wrote (its weights, its tokenizer.json and dict.txt), tokenize with the same BPE (Hugging Face `tokenizers`), keep the first 510 pieces, batch as `protein-lm embed` does (sorted by length, 16,384 padded tokens and 8 x 512^2 attention cells a batch), last layer mean over <s> … </s>, write .npy + .ids.txt |

apex's FusedLAMB is CUDA-only, so its math is written out below (`ApexLamb`, transcribed from apex's
multi_tensor_lamb stage 1 / stage 2, as tests/fixtures/optim/make_optim_fixtures.py does): one global
gradient norm over all tensors, gradients divided by max(1, norm / max_grad_norm), Adam moments with
bias correction, decoupled weight decay 0.01 added to the update, per-tensor trust ratio ||w|| / ||update||.
Threads: OMP_NUM_THREADS (the runner sets 2) and torch.set_num_threads.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MEASUREMENTS = ["proberta-forward", "proberta-train-step", "matmul-limit", "matmul-narrow-dense", "matmul-narrow-conv",
                "embed-proberta"]
args = common.parse_args(MEASUREMENTS)

try:
    import numpy as np
    import torch
    import transformers
    from transformers import RobertaConfig, RobertaForMaskedLM
except ImportError as e:
    sys.exit("proberta_peer.py: %s. It runs in the torch venv: tests/fixtures/proberta/setup_venv.sh, then "
             "tests/fixtures/proberta/.venv/bin/python benches/peers/proberta_peer.py" % e)

torch.set_num_threads(common.threads())
IMPL = "PyTorch %s + transformers %s" % (torch.__version__.split("+")[0], transformers.__version__)
VOCAB, BATCH, LEN = 10_009, 8, 512
MASK_ID = VOCAB - 1  # fairseq appends <mask> last


def config(vocab=VOCAB):
    # The paper's model (spec proberta §4): fairseq RoBERTa sizes, learned positions offset by the padding id,
    # no token types (HF needs one row; it is zero when weights come from our model directory).
    return RobertaConfig(vocab_size=vocab, hidden_size=768, num_hidden_layers=5, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                         eos_token_id=2, type_vocab_size=1, layer_norm_eps=1e-5, hidden_act="gelu",
                         hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def new_model(vocab=VOCAB):
    torch.manual_seed(0)
    model = RobertaForMaskedLM._from_config(config(vocab), attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    return model


def random_ids(generator, batch=BATCH, length=LEN):
    ids = torch.randint(4, VOCAB - 1, (batch, length), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> … </s>
    return ids


class ApexLamb(torch.optim.Optimizer):
    """apex.optimizers.FusedLAMB(adam_w_mode=True, grad_averaging=True, bias_correction=True, use_nvlamb=False) on
    the CPU: the same arithmetic, tensor by tensor."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, max_grad_norm=1.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        # FusedLAMB.step: one L2 norm over every gradient of every group.
        global_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps, wd, max_norm = group["lr"], group["eps"], group["weight_decay"], group["max_grad_norm"]
            # Stage 1: clipped_global_grad_norm = norm > max ? norm / max : 1.
            divisor = (global_norm / max_norm).clamp(min=1.0) if max_norm > 0 else torch.tensor(1.0)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["m"], state["v"]
                g = p.grad / divisor
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                update = (m / (1 - b1 ** t)).div_((v / (1 - b2 ** t)).sqrt_().add_(eps))
                if wd != 0:
                    update.add_(p, alpha=wd)  # adam_w_mode: decay enters the update before the trust ratio
                # Stage 2: trust ratio only with weight decay (or nvlamb), 1 where a norm is 0.
                ratio = 1.0
                if wd != 0:
                    p_norm, u_norm = p.norm().item(), update.norm().item()
                    if p_norm != 0 and u_norm != 0:
                        ratio = p_norm / u_norm
                p.add_(update, alpha=-lr * ratio)


def proberta_forward():
    model = new_model().eval()
    ids = random_ids(torch.Generator().manual_seed(0))

    def forward():
        with torch.inference_mode():
            logits = model(input_ids=ids).logits
        assert logits.shape == (BATCH, LEN, VOCAB)

    return common.time_calls(args.warmup, args.reps, forward), dict(
        batch=BATCH, len=LEN, what="encoder + LM head logits at all positions", attn="sdpa")


def proberta_train_step():
    model = new_model().train()
    optimizer = ApexLamb(model.parameters(), lr=2.5e-3)
    generator = torch.Generator().manual_seed(1)

    def update():
        ids = random_ids(generator)
        # fairseq MaskTokensDataset: 15 % of positions; of those 80 % <mask>, 10 % a random piece, 10 % kept.
        masked = torch.rand(BATCH, LEN, generator=generator) < 0.15
        u = torch.rand(BATCH, LEN, generator=generator)
        inputs = ids.clone()
        inputs[masked & (u < 0.8)] = MASK_ID
        randomised = masked & (u >= 0.8) & (u < 0.9)
        inputs[randomised] = torch.randint(4, VOCAB - 1, (int(randomised.sum()),), generator=generator)
        hidden = model.roberta(input_ids=inputs).last_hidden_state
        logits = model.lm_head(hidden[masked])
        loss = torch.nn.functional.cross_entropy(logits, ids[masked])  # fairseq: summed loss / masked tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return common.time_calls(args.warmup, args.reps, update), dict(
        batch=BATCH, len=LEN, optimizer="apex FusedLAMB math (clip 1.0, wd 0.01)", mask_prob=0.15, attn="sdpa")


MATMUL = {"matmul-limit": (4096, 768, 3072, 4), "matmul-narrow-dense": (16_384, 128, 128, 32),
          "matmul-narrow-conv": (16_384, 1152, 128, 4)}


def matmul():
    m, k, n, calls = MATMUL[args.measurement]
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(m, k, generator=g) * 2 - 1, torch.rand(k, n, generator=g) * 2 - 1

    def products():
        for _ in range(calls):
            torch.mm(a, b)

    seconds = common.time_calls(max(args.warmup, 1), args.reps, products)
    return [s / calls for s in seconds], dict(m=m, k=k, n=n, flops=2 * m * k * n, calls_per_repeat=calls)


def load_model_dir(path):
    """Our model directory's weights into RobertaModel (Hugging Face names, `roberta.` prefixed)."""
    import json
    from safetensors.torch import load_file
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)["model"]
    assert (c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]) == (768, 5, 3072), c
    model = new_model(c["vocab_size"])
    ours = load_file(os.path.join(path, "model.safetensors"))
    state = {("roberta." + k if not k.startswith("lm_head.") else k): v for k, v in ours.items()}
    state["roberta.embeddings.token_type_embeddings.weight"] = torch.zeros(1, 768)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("lm_head.decoder") for k in missing), missing
    return model.eval()


def embed_proberta():
    from tokenizers import Tokenizer
    t0 = __import__("time").perf_counter()
    model = load_model_dir(args.model)
    tokenizer = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    # fairseq ids: <s> <pad> </s> <unk>, then dict.txt's pieces in order.
    with open(os.path.join(args.model, "dict.txt")) as f:
        piece_id = {line.rsplit(" ", 1)[0]: 4 + i for i, line in enumerate(f) if line.strip()}
    records = common.read_fasta(args.fasta)
    units = []
    for _, seq in records:
        pieces = tokenizer.encode(seq, add_special_tokens=False).tokens
        units.append([0] + [piece_id.get(p, 3) for p in pieces[:510]] + [2])  # --long truncate
    lengths = [len(u) for u in units]
    out = np.zeros((len(units), 768), dtype=np.float32)
    with torch.inference_mode():
        for rows in common.batches(lengths, attention_budget=8 * 512 * 512):
            longest = max(lengths[i] for i in rows)
            ids = torch.full((len(rows), longest), 1, dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, :lengths[i]] = torch.tensor(units[i])
            mask = (ids != 1).long()
            hidden = model.roberta(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            out[rows] = ((hidden * m).sum(1) / m.sum(1)).numpy()
    np.save(args.out, out)
    common.write_ids(args.out, [r[0] for r in records])
    seconds = __import__("time").perf_counter() - t0
    return [seconds], dict(proteins=len(records), tokens=sum(lengths), pooling="mean", layer="last",
                           long="truncate", what="after imports: weights, tokenizer, FASTA, forward, .npy")


def main():
    if args.measurement == "embed-proberta":
        # One end-to-end run per call (the runner repeats calls); --reps/--warmup do not apply.
        args.warmup = 0
        seconds, detail = embed_proberta()
    elif args.measurement == "proberta-forward":
        seconds, detail = proberta_forward()
    elif args.measurement == "proberta-train-step":
        seconds, detail = proberta_train_step()
    else:
        seconds, detail = matmul()
    common.report(args, IMPL, seconds, detail)


if __name__ == "__main__":
    main()
