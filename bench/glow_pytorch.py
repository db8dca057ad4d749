#!/usr/bin/env python3
"""PyTorch reference for embedlab's Glow benchmark.

The same flow as `embedlab train glow` with its defaults: per level a squeeze
(pixel_unshuffle), K steps of actnorm (data-dependent initialisation from
--init-batch random training images: loc = -mean, log-scale = -log std),
the LU-parametrised invertible 1x1 convolution (W = P L (U + diag(sign *
exp(log|s|))) built in double precision from a QR rotation; log-det
h*w*sum(log|s|)), and the affine coupling on channels (net: conv 3x3, ReLU,
conv 1x1, ReLU, zero-initialised conv 3x3; log-scale c*tanh(raw/c), c = 2;
y_b = x_b * exp(s) + t); after every level but the last, half the channels
split off with a Gaussian prior whose mean and log-scale a zero-initialised
conv 3x3 of the kept half gives; a learned per-channel Gaussian top prior.
Images are dequantised ((k + u) / 256) and shifted by -1/2; bits/dim =
(-log p + D ln 256) / (D ln 2), D = 784. PyTorch's default initialisation
(embedlab's layers draw the same U(-1/sqrt(fan_in), 1/sqrt(fan_in))), the same
data split (embedlab's seeded permutation picks the validation images), Adam,
the generator reseeded every epoch from (seed, epoch).

Prints one JSON object per epoch (images/s: training images consumed per
second of the epoch's training loop) and a final line with the test bits/dim
(all test images, one dequantisation draw each).
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

LOG_2PI = math.log(2 * math.pi)


class ActNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialised", torch.zeros(1))

    def init_from(self, x):
        if self.initialised.item() > 0.5:
            return
        with torch.no_grad():
            xd = x.double()
            mean = xd.mean(dim=(0, 2, 3), keepdim=True)
            std = ((xd - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
            self.loc.copy_((-mean).float())
            self.logs.copy_((-std.log()).float())
            self.initialised.fill_(1.0)

    def forward(self, x):
        y = (x + self.loc) * self.logs.exp()
        return y, (self.logs.sum() * x.shape[2] * x.shape[3]).expand(x.shape[0])

    def inverse(self, y):
        return y * (-self.logs).exp() - self.loc


class InvConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        q = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))[0]
        p, l, u = torch.linalg.lu(q)
        s = u.diagonal()
        self.lower = nn.Parameter(l.tril(-1).float())
        self.upper = nn.Parameter(u.triu(1).float())
        self.log_s = nn.Parameter(s.abs().log().float())
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", s.sign().float())
        self.c = c

    def weight(self):
        eye = torch.eye(self.c, dtype=torch.float64)
        l = self.lower.double().tril(-1) + eye
        u = self.upper.double().triu(1) + torch.diag_embed(self.sign_s.double() * self.log_s.double().exp())
        return self.perm.double() @ l @ u

    def forward(self, x):
        w = self.weight().to(x.dtype).view(self.c, self.c, 1, 1)
        ld = (self.log_s.double().sum() * x.shape[2] * x.shape[3]).float()
        return F.conv2d(x, w), ld.expand(x.shape[0])

    def inverse(self, y):
        w = torch.linalg.inv(self.weight()).to(y.dtype).view(self.c, self.c, 1, 1)
        return F.conv2d(y, w)


class Coupling(nn.Module):
    def __init__(self, c, hidden, clamp=2.0):
        super().__init__()
        self.ca, self.cb = c // 2, c - c // 2
        self.l1 = nn.Conv2d(self.ca, hidden, 3, padding=1)
        self.l2 = nn.Conv2d(hidden, hidden, 1)
        self.out = nn.Conv2d(hidden, 2 * self.cb, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.clamp = clamp

    def params(self, xa):
        h = self.out(F.relu(self.l2(F.relu(self.l1(xa)))))
        t, raw = h[:, : self.cb], h[:, self.cb:]
        return t, torch.tanh(raw / self.clamp) * self.clamp

    def forward(self, x):
        xa, xb = x[:, : self.ca], x[:, self.ca:]
        t, s = self.params(xa)
        return torch.cat([xa, xb * s.exp() + t], 1), s.flatten(1).sum(1)

    def inverse(self, y):
        ya, yb = y[:, : self.ca], y[:, self.ca:]
        t, s = self.params(ya)
        return torch.cat([ya, (yb - t) * (-s).exp()], 1)


class Glow(nn.Module):
    def __init__(self, c, h, w, levels, steps, hidden):
        super().__init__()
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        for lv in range(levels):
            c, h, w = c * 4, h // 2, w // 2
            blocks = nn.ModuleList()
            for _ in range(steps):
                blocks.append(ActNorm(c))
                blocks.append(InvConv(c))
                blocks.append(Coupling(c, hidden))
            self.levels.append(blocks)
            if lv + 1 < levels:
                keep = c // 2
                conv = nn.Conv2d(keep, 2 * (c - keep), 3, padding=1)
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
                self.priors.append(conv)
                c = keep
        self.top_mean = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.top_logs = nn.Parameter(torch.zeros(1, c, 1, 1))

    @staticmethod
    def standardise(z, m, s):
        eps = (z - m) * (-s).exp()
        lp = -0.5 * (eps ** 2 + LOG_2PI)
        return lp.flatten(1).sum(1) - s.expand_as(z).flatten(1).sum(1)

    def log_prob(self, h, init=False):
        logp = torch.zeros(h.shape[0])
        x = h
        for lv, blocks in enumerate(self.levels):
            x = F.pixel_unshuffle(x, 2)
            for b in blocks:
                if init and isinstance(b, ActNorm):
                    b.init_from(x)
                x, ld = b(x)
                logp = logp + ld
            if lv < len(self.priors):
                c = x.shape[1]
                keep, out = x[:, : c // 2], x[:, c // 2:]
                hh = self.priors[lv](keep)
                k = hh.shape[1] // 2
                logp = logp + self.standardise(out, hh[:, :k], hh[:, k:])
                x = keep
        return logp + self.standardise(x, self.top_mean, self.top_logs)


def read_safetensors(path):
    """name -> tensor of a safetensors file (the format is a JSON header and raw data)."""
    import struct
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=kinds[h["dtype"]]).reshape(h["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def load_embedlab(model, path):
    """Copies an embedlab Glow run's weights (its best.safetensors) into `model`."""
    w = {k.split("/", 1)[1]: v for k, v in read_safetensors(path).items()}
    used = set()

    def put(param, name):
        with torch.no_grad():
            param.copy_(w[name].to(param.dtype).view_as(param))
        used.add(name)

    for l, blocks in enumerate(model.levels):
        for i, b in enumerate(blocks):
            pre = f"flow.l{l}.s{i // 3}"
            if isinstance(b, ActNorm):
                for n in ["loc", "logs", "initialised"]:
                    put(getattr(b, n), f"{pre}.actnorm.{n}")
            elif isinstance(b, InvConv):
                for n in ["lower", "upper", "log_s", "perm", "sign_s"]:
                    put(getattr(b, n), f"{pre}.invconv.{n}")
            else:
                for n in ["l1", "l2", "out"]:
                    put(getattr(b, n).weight, f"{pre}.coupling.{n}.weight")
                    put(getattr(b, n).bias, f"{pre}.coupling.{n}.bias")
        if l < len(model.priors):
            put(model.priors[l].weight, f"flow.l{l}.prior.weight")
            put(model.priors[l].bias, f"flow.l{l}.prior.bias")
    put(model.top_mean, "flow.top_mean")
    put(model.top_logs, "flow.top_logs")
    left = set(w) - used
    if left:
        raise SystemExit(f"{path}: weights not used: {sorted(left)[:5]}")


def dequantise(x):
    k = (x * 255.0).round().clamp(0, 255)
    u = torch.rand_like(x).clamp(1e-6, 1 - 1e-6)
    return (k + u) / 256.0


def bpd(model, x):
    d = x[0].numel()
    logp = model.log_prob(dequantise(x) - 0.5)
    return (-logp + d * math.log(256.0)) / (d * math.log(2.0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--levels", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--init-batch", type=int, default=512)
    ap.add_argument("--valid", type=int, default=5000)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fused-adam", action="store_true")
    ap.add_argument("--load", default=None,
                    help="evaluate an embedlab Glow run's best.safetensors with this code (no training)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                    help="cosine: lr * (1 + cos(pi * epoch / epochs)) / 2, set at each epoch's start (embedlab's)")
    ap.add_argument("--autocast", choices=["off", "bf16"], default="off",
                    help="bf16: the training forward passes under torch.autocast('cpu', bfloat16) (PyTorch's "
                         "mixed precision on CPU); weights, Adam and evaluation stay float32")
    ap.add_argument("--channels-last", action="store_true",
                    help="the model's weights and the image batches in channels-last memory format")
    a = ap.parse_args()
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16")
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    tr_x = read_idx(find(a.data, "train-images-idx3-ubyte"))
    te_x = read_idx(find(a.data, "t10k-images-idx3-ubyte"))
    perm = seeded_permutation(tr_x.shape[0], a.seed)
    t = perm[a.valid:]
    if a.train_limit:
        t = t[: a.train_limit]
    X = torch.from_numpy(tr_x[t].astype(np.float32) / 255.0).unsqueeze(1)
    T = torch.from_numpy(te_x.astype(np.float32) / 255.0).unsqueeze(1)
    _, c, h, w = X.shape
    torch.manual_seed(a.seed)
    model = Glow(c, h, w, a.levels, a.steps, a.hidden)
    params = sum(p.numel() for p in model.parameters())
    if a.load:
        load_embedlab(model, a.load)
        model.eval()
        torch.manual_seed(a.seed ^ 0x7E57)
        with torch.no_grad():
            test = torch.cat([bpd(model, T[s:s + 500]) for s in range(0, T.shape[0], 500)])
        print(json.dumps({"loaded": a.load, "test_bpd": test.mean().item(), "parameters": params}))
        return
    with torch.no_grad():
        idx = torch.randperm(X.shape[0])[: a.init_batch]
        model.log_prob(dequantise(X[idx]) - 0.5, init=True)
    model = model.to(memory_format=mf)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, fused=True if a.fused_adam else None)
    n = X.shape[0]
    t_all = 0.0
    for epoch in range(a.epochs):
        torch.manual_seed(epoch_seed(a.seed, epoch))
        if a.schedule == "cosine":
            for g in opt.param_groups:
                g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * epoch / a.epochs))
        model.train()
        t0 = time.perf_counter()
        p = torch.randperm(n)
        total = 0.0
        for s in range(0, n, a.batch_size):
            xb = X.index_select(0, p[s:s + a.batch_size]).contiguous(memory_format=mf)
            with cast:
                loss = bpd(model, xb).float().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        secs = time.perf_counter() - t0
        t_all += secs
        print(json.dumps({"epoch": epoch + 1, "seconds": secs, "images_per_second": n / secs,
                          "train_bpd": total / n}), flush=True)
    model.eval()
    torch.manual_seed(a.seed ^ 0x7E57)
    with torch.no_grad():
        test = torch.cat([bpd(model, T[s:s + 500]) for s in range(0, T.shape[0], 500)])
    print(json.dumps({"final": True, "test_bpd": test.mean().item(), "parameters": params,
                      "train_seconds": t_all, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "fused_adam": a.fused_adam,
                      "autocast": a.autocast, "channels_last": a.channels_last}), flush=True)


if __name__ == "__main__":
    main()
