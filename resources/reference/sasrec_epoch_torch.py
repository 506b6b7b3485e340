"""PyTorch reference for `movierec bench model`: seconds per SASRec-CE training epoch on ml-100k.

The same model and work as movierec's SASRec benchmark (hidden 64, 2 pre-norm blocks, 2 heads,
FFN 256 with GELU, max_len 200, dropout 0.1, full softmax cross-entropy over the items with an
output bias, AdamW lr 1e-3 / weight decay 0.01, gradient clipping at 5, batch 16), on the same
training sequences: per user (at least 5 ratings, sorted by timestamp then movie id), the most
recent 201 training items (the last two items are validation and test).

Two padding modes: `batch` pads each batch to its longest member and draws batches from runs of
similar lengths, as movierec does; `full` pads every sequence to 200, as the usual SASRec code does.

Run it beside the Rust benchmark, on the same machine and cores:

    python3 resources/reference/sasrec_epoch_torch.py --db resources/db/ml-100k.db --threads 2
"""

import argparse
import math
import random
import sqlite3
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN, LAYERS, HEADS, MAX_LEN, DROPOUT = 64, 2, 2, 200, 0.1


def training_sequences(db):
    rows = sqlite3.connect(db).execute(
        "SELECT user_id, movie_id FROM ratings ORDER BY user_id, timestamp, movie_id"
    )
    users = {}
    for user, movie in rows:
        users.setdefault(user, []).append(movie)
    items = sorted({m for seq in users.values() for m in seq})
    index = {m: i for i, m in enumerate(items)}
    seqs = []
    for seq in users.values():
        if len(seq) < 5:
            continue
        train = [index[m] for m in seq[:-2]]
        window = train[-(MAX_LEN + 1):]
        if len(window) >= 2:
            seqs.append(window)
    return seqs, len(items)


class SasRec(nn.Module):
    def __init__(self, items):
        super().__init__()
        self.items = items
        self.pad = items
        self.item_emb = nn.Embedding(items + 2, HIDDEN)
        self.pos_emb = nn.Embedding(MAX_LEN, HIDDEN)
        layer = nn.TransformerEncoderLayer(
            HIDDEN, HEADS, 4 * HIDDEN, DROPOUT, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(HIDDEN)
        self.drop = nn.Dropout(DROPOUT)
        self.bias = nn.Parameter(torch.zeros(items))
        # movierec's initialisation: matrices from a normal of deviation 0.02, truncated at two
        # deviations (layer norms start at one and zero, as PyTorch's do).
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids):
        t = ids.shape[1]
        positions = torch.arange(MAX_LEN - t, MAX_LEN)
        xs = self.item_emb(ids) * math.sqrt(HIDDEN) + self.pos_emb(positions)
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        xs = self.encoder(self.drop(xs), mask=causal, src_key_padding_mask=ids == self.pad)
        return self.norm(xs)


def batches(seqs, batch_size, mode, rng):
    order = list(range(len(seqs)))
    rng.shuffle(order)
    out = []
    if mode == "batch":
        pool = batch_size * 50
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=lambda i: len(seqs[i]))
            out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(out)
    else:
        out = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return out


def step(model, opt, seqs, pad, mode):
    inputs = [s[:-1] for s in seqs]
    targets = [s[1:] for s in seqs]
    t = MAX_LEN if mode == "full" else max(len(s) for s in inputs)
    ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    tgt = torch.full((len(seqs), t), -100, dtype=torch.long)
    for row, (inp, out) in enumerate(zip(inputs, targets)):
        ids[row, t - len(inp):] = torch.tensor(inp)
        tgt[row, t - len(out):] = torch.tensor(out)
    hidden = model(ids)
    keep = tgt.view(-1) != -100
    picked = hidden.reshape(-1, HIDDEN)[keep]
    logits = picked @ model.item_emb.weight[: model.items].T + model.bias
    loss = F.cross_entropy(logits, tgt.view(-1)[keep])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    return loss.item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="resources/db/ml-100k.db")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mode", choices=["batch", "full", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    seqs, items = training_sequences(args.db)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(seqs)} sequences, {items} items")
    for mode in (["batch", "full"] if args.mode == "both" else [args.mode]):
        model = SasRec(items)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        rng = random.Random(42)
        secs = []
        for epoch in range(1, args.epochs + 1):
            start = time.perf_counter()
            losses = [step(model, opt, [seqs[i] for i in b], items, mode)
                      for b in batches(seqs, args.batch_size, mode, rng)]
            secs.append(time.perf_counter() - start)
            print(f"  {mode:5} epoch {epoch}: {secs[-1]:.2f} s, loss {statistics.mean(losses):.3f}")
        print(f"sasrec training (pytorch, padding {mode}), batch {args.batch_size}: "
              f"{statistics.median(secs):.2f} s/epoch (median of {len(secs)} epochs)")


if __name__ == "__main__":
    main()
