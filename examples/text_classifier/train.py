#!/usr/bin/python3
"""A tiny text classifier trained the way many training scripts are, saved the way they save:
{"model": model.state_dict(), "predictions": numpy array, ...}. The C++ program next to it mirrors
the network, loads the weights with statedict and must produce the same logits.
Usage: /usr/bin/python3 train.py [OUTDIR]  (writes text_classifier.pt and expected.json)"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

CORPUS = [
    ("a great movie with a wonderful cast", 1), ("truly great and moving", 1), ("i loved this film", 1),
    ("wonderful acting and a great story", 1), ("the best film of the year", 1), ("a moving and beautiful story", 1),
    ("i loved the music and the cast", 1), ("beautiful and great fun", 1), ("a terrible movie", 0),
    ("boring and far too long", 0), ("i hated this film", 0), ("the worst story of the year", 0),
    ("terrible acting and a boring plot", 0), ("a waste of time", 0), ("the plot was dull and boring", 0),
    ("i hated the music", 0),
]
MAX_LEN = 12


def build_vocab(corpus):
    vocab = {"<pad>": 0, "<unk>": 1}
    for text, _ in corpus:
        for w in text.split():
            vocab.setdefault(w, len(vocab))
    return vocab


def encode(text, vocab, max_len=MAX_LEN):
    """Lower-case, split on spaces, map unknown words to <unk>, cut and pad to max_len."""
    ids = [vocab.get(w, vocab["<unk>"]) for w in text.lower().split()][:max_len]
    return ids + [vocab["<pad>"]] * (max_len - len(ids))


class TextClassifier(nn.Module):
    def __init__(self, vocab_size, dim=16, classes=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.hidden = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, ids):
        mask = (ids != 0).float().unsqueeze(-1)
        pooled = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.out(torch.relu(self.hidden(pooled)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    vocab = build_vocab(CORPUS)
    x = torch.tensor([encode(t, vocab) for t, _ in CORPUS])
    y = torch.tensor([label for _, label in CORPUS])
    model = TextClassifier(len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.softmax(model(x), dim=1).numpy()
    torch.save({"model": model.state_dict(), "vocab": vocab, "max_len": MAX_LEN, "epoch": 60,
                "predictions": predictions.astype(np.float32)}, os.path.join(out, "text_classifier.pt"))
    expected = []
    for text in ["a great film", "a boring waste of time", "an unknown word"]:
        ids = encode(text, vocab)
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0].tolist()
        expected.append({"text": text, "ids": ids, "logits": logits})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"trained; accuracy {(predictions.argmax(1) == y.numpy()).mean():.2f}; wrote {out}/text_classifier.pt")


if __name__ == "__main__":
    main()
