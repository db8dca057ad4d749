#!/usr/bin/env python3
"""PyTorch reference for embedlab's VAE benchmarks.

The same models as `embedlab train vae` (MLP 784-512-256-(2x20) /
20-256-512-784, or the conv model), the same data split (embedlab's
SplitMix64 Fisher-Yates permutation picks the validation images), the same
seed policy (libtorch's generator re-seeded at every epoch from seed and
epoch; validation and test draws from fixed seeds), dynamic binarisation,
Adam 1e-3, batch 128, best-validation-epoch weights for the test numbers,
and the same importance-weighted NLL estimator. Data live in one tensor and
a batch is one index_select, as in embedlab: the fastest plain PyTorch path.

Prints one JSON object per epoch and a final summary line (JSON).
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MASK = (1 << 64) - 1


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(folder, stem):
    for ext in ("", ".gz"):
        p = os.path.join(folder, stem + ext)
        if os.path.exists(p):
            return p
    raise SystemExit(f"{folder}: no {stem}[.gz]")


def seeded_permutation(n, seed):
    """embedlab's models::batches::seeded_permutation, bit for bit."""
    state = (seed ^ 0x9E3779B97F4A7C15) & MASK
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        j = z % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def wrap_i64(v):
    v &= MASK
    return v - (1 << 64) if v >= (1 << 63) else v


def epoch_seed(seed, epoch):
    return wrap_i64(seed * 1_000_003 + epoch * 7919 + 17)


def he_uniform_(layer):
    """tch's default initialisation: He-uniform weights (ReLU gain, fan-in
    = weight.shape[1] x receptive field, as PyTorch computes it); linear
    biases uniform in +-1/sqrt(in_features), convolution biases zero."""
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    if isinstance(layer, nn.Linear):
        b = 1.0 / math.sqrt(layer.in_features)
        nn.init.uniform_(layer.bias, -b, b)
    else:
        nn.init.zeros_(layer.bias)


class MlpVAE(nn.Module):
    def __init__(self, d, hidden, k):
        super().__init__()
        self.enc = nn.ModuleList()
        w = d
        for h in hidden:
            self.enc.append(nn.Linear(w, h))
            w = h
        self.enc_out = nn.Linear(w, 2 * k)
        self.dec = nn.ModuleList()
        w = k
        for h in reversed(hidden):
            self.dec.append(nn.Linear(w, h))
            w = h
        self.dec_out = nn.Linear(w, d)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                he_uniform_(m)

    def encode(self, x):
        h = x.flatten(1)
        for l in self.enc:
            h = F.relu(l(h))
        return self.enc_out(h).chunk(2, 1)

    def decode(self, z):
        h = z
        for l in self.dec:
            h = F.relu(l(h))
        return self.dec_out(h)


class ConvVAE(nn.Module):
    def __init__(self, c, hh, ww, hidden, k):
        super().__init__()
        self.shape = (c, hh, ww)
        s = 64 * (hh // 4) * (ww // 4)
        self.c1 = nn.Conv2d(c, 32, 4, 2, 1)
        self.c2 = nn.Conv2d(32, 64, 4, 2, 1)
        self.fc = nn.Linear(s, hidden)
        self.enc_out = nn.Linear(hidden, 2 * k)
        self.dfc = nn.Linear(k, hidden)
        self.dfc2 = nn.Linear(hidden, s)
        self.t1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.t2 = nn.ConvTranspose2d(32, c, 4, 2, 1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                he_uniform_(m)

    def encode(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x)))).flatten(1)
        return self.enc_out(F.relu(self.fc(h))).chunk(2, 1)

    def decode(self, z):
        c, hh, ww = self.shape
        h = F.relu(self.dfc2(F.relu(self.dfc(z)))).view(-1, 64, hh // 4, ww // 4)
        return self.t2(F.relu(self.t1(h))).flatten(1)


def log_lik(model, x, z):
    return -F.binary_cross_entropy_with_logits(model.decode(z), x.flatten(1), reduction="none").sum(1)


def kl(mu, lv):
    return 0.5 * (lv.exp() + mu.square() - 1 - lv).sum(1)


def loss_fn(model, x):
    mu, lv = model.encode(x)
    z = mu + (0.5 * lv).exp() * torch.randn_like(mu)
    rec = -log_lik(model, x, z).mean()
    k = kl(mu, lv).mean()
    return rec + k, rec, k


@torch.no_grad()
def evaluate(model, x, batch=500):
    e = 0.0
    for s in range(0, x.shape[0], batch):
        xb = torch.bernoulli(x[s:s + batch])
        mu, lv = model.encode(xb)
        z = mu + (0.5 * lv).exp() * torch.randn_like(mu)
        e += (log_lik(model, xb, z) - kl(mu, lv)).double().sum().item()
    return e / x.shape[0]


@torch.no_grad()
def iwae(model, x, k, chunk=1000):
    total = 0.0
    LOG2PI = math.log(2 * math.pi)
    for s in range(0, x.shape[0], 10):
        xb = torch.bernoulli(x[s:s + 10])
        for i in range(xb.shape[0]):
            xi = xb[i:i + 1]
            mu, lv = model.encode(xi)
            std = (0.5 * lv).exp()
            ws = []
            done = 0
            while done < k:
                m = min(chunk, k - done)
                eps = torch.randn(m, mu.shape[1])
                z = mu + std * eps
                ll = log_lik(model, xi.expand(m, *xi.shape[1:]), z)
                lp = (-0.5 * (z.square() + LOG2PI)).sum(1)
                lq = (-0.5 * (eps.square() + LOG2PI) - 0.5 * lv).sum(1)
                ws.append(ll + lp - lq)
                done += m
            w = torch.cat(ws).double()
            total += (torch.logsumexp(w, 0) - math.log(k)).item()
    return -total / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--latent", type=int, default=20)
    ap.add_argument("--hidden", default="512,256")
    ap.add_argument("--valid", type=int, default=5000)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iwae-k", type=int, default=1000)
    ap.add_argument("--iwae-images", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fused-adam", action="store_true",
                    help="torch.optim.Adam(fused=True) instead of PyTorch's default for CPU tensors")
    ap.add_argument("--autocast", choices=["off", "bf16"], default="off",
                    help="bf16: the training forward passes under torch.autocast('cpu', bfloat16) (PyTorch's "
                         "mixed precision on CPU); weights, Adam and evaluation stay float32")
    ap.add_argument("--channels-last", action="store_true",
                    help="the model's weights and the image batches in channels-last memory format")
    a = ap.parse_args()
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16")
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.threads:
        torch.set_num_threads(a.threads)
    hidden = [int(h) for h in a.hidden.split(",")]
    tr_x = read_idx(find(a.data, "train-images-idx3-ubyte"))
    tr_y = read_idx(find(a.data, "train-labels-idx1-ubyte"))
    te_x = read_idx(find(a.data, "t10k-images-idx3-ubyte"))
    perm = seeded_permutation(tr_x.shape[0], a.seed)
    v, t = perm[: a.valid], perm[a.valid:]
    if a.train_limit:
        t = t[: a.train_limit]
    to_t = lambda arr: torch.from_numpy(arr.astype(np.float32) / 255.0).unsqueeze(1)
    X, V, T = to_t(tr_x[t]), to_t(tr_x[v]), to_t(te_x)
    del tr_y
    torch.manual_seed(a.seed)
    if a.arch == "mlp":
        model = MlpVAE(X[0].numel(), hidden, a.latent)
    else:
        model = ConvVAE(X.shape[1], X.shape[2], X.shape[3], hidden[0], a.latent)
    model = model.to(memory_format=mf)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, fused=True if a.fused_adam else None)
    n = X.shape[0]
    best = (None, math.inf)
    t_all = time.perf_counter()
    for epoch in range(a.epochs):
        torch.manual_seed(epoch_seed(a.seed, epoch))
        t0 = time.perf_counter()
        p = torch.randperm(n)
        tot = 0.0
        model.train()
        for s in range(0, n, a.batch_size):
            xb = torch.bernoulli(X.index_select(0, p[s:s + a.batch_size]))
            if xb.dim() == 4:
                xb = xb.contiguous(memory_format=mf)
            with cast:
                loss, rec, k = loss_fn(model, xb)
            loss = loss.float()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.detach() * xb.shape[0]
        tot = tot.item() / n
        secs = time.perf_counter() - t0
        torch.manual_seed(epoch_seed(a.seed, 0) ^ 0x5EED)
        vl = -evaluate(model, V)
        if vl < best[1]:
            best = ({k_: v_.clone() for k_, v_ in model.state_dict().items()}, vl)
        print(json.dumps({"epoch": epoch + 1, "train_loss": tot, "valid_loss": vl, "seconds": secs,
                          "images_per_second": n / secs}), flush=True)
    train_seconds = time.perf_counter() - t_all
    model.load_state_dict(best[0])
    torch.manual_seed(a.seed ^ 0x7E57)
    elbo = evaluate(model, T)
    nll = None
    if a.iwae_k > 0:
        nll = iwae(model, T[: a.iwae_images], a.iwae_k)
    print(json.dumps({"final": True, "arch": a.arch, "test_elbo": elbo, "nll_iwae": nll, "iwae_k": a.iwae_k,
                      "iwae_images": min(a.iwae_images, T.shape[0]), "best_valid_loss": best[1],
                      "train_seconds": train_seconds, "torch": torch.__version__, "fused_adam": a.fused_adam,
                      "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
