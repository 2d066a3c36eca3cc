"""PyTorch peer of `cargo bench --bench train_step`: the same masked-LM update of PRoBERTa's network
(fairseq RoBERTa: learned positions, embedding LayerNorm, post-LN blocks with exact GELU, tied LM
head evaluated at masked positions only) on random ids, AdamW, clip 1.0.

    python benches/peers/proberta_train_step.py [--paper-size]

Needs torch (tests/fixtures/optim/.venv has it). Threads: OMP_NUM_THREADS / torch.set_num_threads.
"""
import os
import sys
import time

import torch
from torch import nn

paper = "--paper-size" in sys.argv
hidden, ff, batch, length = (768, 3072, 8, 512) if paper else (192, 768, 16, 128)
vocab, layers, heads = 10_009, 5, 12
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
torch.manual_seed(0)


class Roberta(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(vocab, hidden, padding_idx=1)
        self.positions = nn.Embedding(514, hidden, padding_idx=1)
        self.norm = nn.LayerNorm(hidden, eps=1e-5)
        layer = nn.TransformerEncoderLayer(hidden, heads, ff, dropout=0.1, activation="gelu", batch_first=True,
                                           norm_first=False, layer_norm_eps=1e-5)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.lm_dense = nn.Linear(hidden, hidden)
        self.lm_norm = nn.LayerNorm(hidden, eps=1e-5)
        self.lm_bias = nn.Parameter(torch.zeros(vocab))
        self.drop = nn.Dropout(0.1)

    def forward(self, ids, masked):
        positions = torch.arange(2, ids.shape[1] + 2).unsqueeze(0)
        x = self.drop(self.norm(self.tokens(ids) + self.positions(positions)))
        x = self.encoder(x)[masked]
        x = self.lm_norm(nn.functional.gelu(self.lm_dense(x)))
        return x @ self.tokens.weight.t() + self.lm_bias


model = Roberta()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.01)
generator = torch.Generator().manual_seed(1)


def update():
    ids = torch.randint(4, vocab - 1, (batch, length), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2
    masked = torch.rand(batch, length, generator=generator) < 0.15
    targets = ids[masked]
    inputs = ids.clone()
    inputs[masked] = vocab - 1
    loss = nn.functional.cross_entropy(model(inputs, masked), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


warmup, timed = 3, 12
for _ in range(warmup):
    update()
start = time.perf_counter()
for _ in range(timed):
    update()
per_update = (time.perf_counter() - start) / timed
print(f"PyTorch {torch.__version__} {layers} layers × {hidden}, batch {batch} × {length}, {torch.get_num_threads()} threads: "
      f"{per_update:.3f} s per update, {batch / per_update:.1f} sequences/s, {batch * length / per_update:.0f} tokens/s")
