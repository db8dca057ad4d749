#!/usr/bin/env python3
"""PyTorch reference for embedlab's GAN benchmark.

The same players as `embedlab train dcgan|wgan-gp --arch conv` (generator:
linear to 2b x h/4 x w/4, BatchNorm, ReLU, transposed conv to b, BatchNorm,
ReLU, transposed conv to the image, sigmoid; discriminator: conv b, leaky
ReLU 0.2, conv 2b (BatchNorm for DCGAN only), leaky ReLU, linear to a
score), PyTorch's default initialisation (embedlab's layers draw the same
U(-1/sqrt(fan_in), 1/sqrt(fan_in))), BatchNorm weights 1, the same data
split (embedlab's seeded permutation picks the validation images), the
same round: d_steps discriminator steps, each on a new batch, then one
generator step of the last batch's size; Adam with the same betas; the
generator reseeded every epoch from (seed, epoch).

Prints one JSON object per epoch (images/s: training images consumed per
second of the epoch's training loop) and a summary line; writes --samples
(n x c*h*w float32 .npy, images in [0, 1]) for `embedlab score`.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, "bench")
from vae_pytorch import epoch_seed, find, read_idx, seeded_permutation  # noqa: E402


class Gen(nn.Module):
    def __init__(self, k, c, h, w, b):
        super().__init__()
        self.shape = (2 * b, h // 4, w // 4)
        self.fc = nn.Linear(k, 2 * b * (h // 4) * (w // 4))
        self.bn0 = nn.BatchNorm2d(2 * b)
        self.t1 = nn.ConvTranspose2d(2 * b, b, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(b)
        self.t2 = nn.ConvTranspose2d(b, c, 4, 2, 1)

    def forward(self, z):
        h = self.fc(z).view(z.shape[0], *self.shape)
        h = F.relu(self.bn0(h))
        h = F.relu(self.bn1(self.t1(h)))
        return torch.sigmoid(self.t2(h))


class Disc(nn.Module):
    def __init__(self, c, h, w, b, batchnorm):
        super().__init__()
        self.c1 = nn.Conv2d(c, b, 4, 2, 1)
        self.c2 = nn.Conv2d(b, 2 * b, 4, 2, 1)
        self.bn = nn.BatchNorm2d(2 * b) if batchnorm else None
        self.head = nn.Linear(2 * b * (h // 4) * (w // 4), 1)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x), 0.2)
        h = self.c2(h)
        if self.bn is not None:
            h = self.bn(h)
        h = F.leaky_relu(h, 0.2).flatten(1)
        return self.head(h).squeeze(1)


def gradient_penalty(d, real, fake):
    eps = torch.rand(real.shape[0], 1, 1, 1)
    xhat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(d(xhat).sum(), xhat, create_graph=True)
    return ((g.flatten(1).square().sum(1) + 1e-12).sqrt() - 1).square().mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/fashion-mnist")
    ap.add_argument("--kind", choices=["dcgan", "wgan-gp"], default="dcgan")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--gp-weight", type=float, default=10.0)
    ap.add_argument("--valid", type=int, default=5000)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", default=None)
    ap.add_argument("--n-samples", type=int, default=5000)
    ap.add_argument("--fused-adam", action="store_true")
    ap.add_argument("--autocast", choices=["off", "bf16"], default="off",
                    help="bf16: the players' forward passes under torch.autocast('cpu', bfloat16); "
                         "losses, weights and Adam stay float32")
    ap.add_argument("--channels-last", action="store_true",
                    help="the players' weights and the image batches in channels-last memory format")
    a = ap.parse_args()
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16")
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    wgan = a.kind == "wgan-gp"
    lr = a.lr or (1e-4 if wgan else 2e-4)
    betas = (0.5, 0.9) if wgan else (0.5, 0.999)
    d_steps = 5 if wgan else 1
    tr_x = read_idx(find(a.data, "train-images-idx3-ubyte"))
    perm = seeded_permutation(tr_x.shape[0], a.seed)
    t = perm[a.valid:]
    if a.train_limit:
        t = t[: a.train_limit]
    X = torch.from_numpy(tr_x[t].astype(np.float32) / 255.0).unsqueeze(1)
    _, c, h, w = X.shape
    torch.manual_seed(a.seed)
    G = Gen(a.latent, c, h, w, a.hidden)
    D = Disc(c, h, w, a.hidden, batchnorm=not wgan)
    G = G.to(memory_format=mf)
    D = D.to(memory_format=mf)
    fused = True if a.fused_adam else None
    og = torch.optim.Adam(G.parameters(), lr=lr, betas=betas, fused=fused)
    od = torch.optim.Adam(D.parameters(), lr=lr, betas=betas, fused=fused)
    n = X.shape[0]
    t_all = 0.0
    for epoch in range(a.epochs):
        torch.manual_seed(epoch_seed(a.seed, epoch))
        G.train()
        D.train()
        t0 = time.perf_counter()
        p = torch.randperm(n)
        starts = list(range(0, n, a.batch_size))
        i = 0
        sums = {"disc": 0.0, "gen": 0.0}
        while i < len(starts):
            last = None
            for _ in range(d_steps):
                if i >= len(starts):
                    break
                xb = X.index_select(0, p[starts[i]:starts[i] + a.batch_size]).contiguous(memory_format=mf)
                i += 1
                last = xb.shape[0]
                with cast:
                    fake = G(torch.randn(last, a.latent)).detach()
                    rs, fs = D(xb).float(), D(fake).float()
                if wgan:
                    with cast:
                        gp = gradient_penalty(D, xb, fake).float()
                    ld = -(rs.mean() - fs.mean()) + a.gp_weight * gp
                else:
                    ld = F.softplus(-rs).mean() + F.softplus(fs).mean()
                od.zero_grad(set_to_none=True)
                ld.backward()
                od.step()
                sums["disc"] += ld.item() * last
            if last is None:
                break
            with cast:
                s = D(G(torch.randn(last, a.latent))).float()
            lg = -s.mean() if wgan else F.softplus(-s).mean()
            og.zero_grad(set_to_none=True)
            lg.backward()
            og.step()
            sums["gen"] += lg.item() * last
        secs = time.perf_counter() - t0
        t_all += secs
        print(json.dumps({"epoch": epoch + 1, "seconds": secs, "images_per_second": n / secs,
                          "disc_loss": sums["disc"] / n}), flush=True)
    if a.samples:
        G.eval()
        torch.manual_seed(a.seed ^ 0x6E)
        with torch.no_grad():
            s = torch.cat([G(torch.randn(min(500, a.n_samples - k), a.latent))
                           for k in range(0, a.n_samples, 500)])
        np.save(a.samples, s.reshape(s.shape[0], -1).numpy().astype(np.float32))
    print(json.dumps({"final": True, "kind": a.kind, "train_seconds": t_all, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "fused_adam": a.fused_adam,
                      "autocast": a.autocast, "channels_last": a.channels_last}), flush=True)


if __name__ == "__main__":
    main()
