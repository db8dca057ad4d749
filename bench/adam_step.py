"""PyTorch's Adam step on the MLP VAE's parameter shapes (the counterpart of
`cargo run --release -p embedlab-train --example adam_step`): the default
(for-each) implementation and `fused=True`, 2 threads, random gradients.
    .venv/bin/python bench/adam_step.py"""
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
shapes = [(512, 784), (512,), (256, 512), (256,), (40, 256), (40,),
          (256, 20), (256,), (512, 256), (512,), (784, 512), (784,)]
params = [torch.randn(s, requires_grad=True) for s in shapes]
grads = [torch.randn(s) for s in shapes]
n = sum(p.numel() for p in params)
for name, kw in (("default", {}), ("fused", {"fused": True})):
    opt = torch.optim.Adam(params, lr=1e-3, **kw)
    steps = 300
    for rnd in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
        ms = (time.perf_counter() - t) * 1e3 / steps
        print(f"{name} round {rnd}: {n} parameters, {ms:.3f} ms a step")
