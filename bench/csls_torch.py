"""CSLS's r-term pass in PyTorch, written the usual way (MUSE's
get_nn_avg_dist without faiss): blocks of query rows against all targets,
a matrix product into one reused buffer of about 256 MiB, then topk.
Same sizes as `embedlab bench csls`; prints seconds and GFLOP/s as JSON."""
import json, sys, time
import torch

n, d, k = int(sys.argv[1]), int(sys.argv[2]), 10
torch.manual_seed(0)
x = torch.nn.functional.normalize(torch.randn(n, d), dim=1)
y = torch.nn.functional.normalize(torch.randn(n, d), dim=1)
bs = max(1, min(8192, (256 << 20) // 4 // n))
buf, xt = torch.empty(bs, n), x.t()
t = time.perf_counter()
r, i = [], 0
while i < n:
    l = min(bs, n - i)
    s = buf[:l]
    torch.mm(y[i:i + l], xt, out=s)
    r.append(s.topk(k, 1)[0].mean(1))
    i += l
dt = time.perf_counter() - t
print(json.dumps({"n": n, "dim": d, "threads": torch.get_num_threads(), "seconds_r_target": dt,
                  "gflop_per_s": 2 * n * n * d / dt / 1e9}))
