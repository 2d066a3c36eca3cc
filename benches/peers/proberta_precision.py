"""PyTorch's side of the PRoBERTa rows of the precision table (`cargo bench --bench precision`, issue 15): the paper's
encoder (`RobertaModel`, 5 layers x 768, 12 heads, FFN 3,072, vocabulary 10,009, 514 positions, exact GELU, SDPA
attention) with seeded random weights, batch 8 x 512 random ids, the last hidden state summed over every position
(`Pooling::SumAll`, the reference fork's non-CLS pooling), in float32 and again with the same weights in float64.

    tests/fixtures/proberta/.venv/bin/python benches/peers/proberta_precision.py [--out DIR]

DIR (default target/precision/proberta, git-ignored) gets
  hf/                 `save_pretrained` (config.json + model.safetensors, float32, Hugging Face names): the crate
                      reads it through its own importer (`proberta::import::import_hugging_face`)
  ids.npy             (8, 512) uint32 <s> random pieces </s>, no padding
  torch_f32_sum.npy   (8, 768) float32 sum over positions of the float32 last hidden state
  torch_f64_sum.npy   (8, 768) float64 the same in float64 (weights upcast from the same float32 values)
  torch_f32_last.npy  (8, 512, 768) float32 last hidden state; torch_f64_last.npy the float64 one
  meta.json           versions and PyTorch's own max |f32 - float64|
Threads: OMP_NUM_THREADS (default 2).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
try:
    import numpy as np
    import torch
    import transformers
    from transformers import RobertaConfig, RobertaModel
except ImportError as e:
    sys.exit("proberta_precision.py: %s. It runs in the torch venv: tests/fixtures/proberta/setup_venv.sh, then "
             "tests/fixtures/proberta/.venv/bin/python benches/peers/proberta_precision.py" % e)

VOCAB, BATCH, LEN = 10_009, 8, 512


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=os.path.join(ROOT, "target", "precision", "proberta"))
    a = p.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    os.makedirs(a.out, exist_ok=True)
    config = RobertaConfig(vocab_size=VOCAB, hidden_size=768, num_hidden_layers=5, num_attention_heads=12,
                           intermediate_size=3072, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1, layer_norm_eps=1e-5, hidden_act="gelu",
                           hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(0)
    model = RobertaModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(os.path.join(a.out, "hf"), safe_serialization=True)
    ids = torch.randint(4, VOCAB - 1, (BATCH, LEN), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>, every row full: the sum runs over 512 positions
    with torch.inference_mode():
        last32 = model(input_ids=ids).last_hidden_state
        sum32 = last32.sum(1)
        model64 = model.double()
        last64 = model64(input_ids=ids).last_hidden_state
        sum64 = last64.sum(1)
    d_sum = float((sum32.double() - sum64).abs().max())
    d_last = float((last32.double() - last64).abs().max())
    scale = float(sum64.abs().max())
    np.save(os.path.join(a.out, "ids.npy"), ids.numpy().astype(np.uint32))
    np.save(os.path.join(a.out, "torch_f32_sum.npy"), sum32.numpy())
    np.save(os.path.join(a.out, "torch_f64_sum.npy"), sum64.numpy())
    np.save(os.path.join(a.out, "torch_f32_last.npy"), last32.numpy())
    np.save(os.path.join(a.out, "torch_f64_last.npy"), last64.numpy())
    meta = dict(generator="benches/peers/proberta_precision.py", batch=BATCH, len=LEN, threads=threads,
                torch=torch.__version__.split("+")[0], transformers=transformers.__version__,
                attn=model.config._attn_implementation, sum_max_abs_diff=d_sum, sum_max_abs_ref=scale,
                sum_rel_diff=d_sum / scale, last_hidden_max_abs_diff=d_last)
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("PyTorch f32 vs float64, SumAll of the last hidden state (8 x 512): max |d| %.3g (max |ref| %.3g, "
          "relative %.3g); last hidden state %.3g" % (d_sum, scale, d_sum / scale, d_last))


if __name__ == "__main__":
    main()
