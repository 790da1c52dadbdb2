"""Overhead of the Python binding: `sprint_attn.attend` on 4 heads x 4096 tokens x d = 64
against the same Rust computation (`attend`'s Rust body on inputs already in Rust memory,
timed inside Rust), side by side in one process, interleaved. Prints the minimum and the
median of each and the overhead of both: on a shared machine the minimum is the robust
estimate (other load only ever adds time). It also splits each Python call into its Rust
computation (timed inside the call) and the rest, which is the binding's own cost and
does not depend on how fast the computation ran.

    python examples/overhead.py [--repeats 5] [--threshold 0.0]
"""

import argparse
import statistics
import time

import numpy as np

import sprint_attn as sa
from sprint_attn import _native

p = argparse.ArgumentParser()
p.add_argument("--heads", type=int, default=4)
p.add_argument("--seq", type=int, default=4096)
p.add_argument("--dim", type=int, default=64)
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--threshold", type=float, default=0.0, help="Th, logit units")
p.add_argument("--torch", action="store_true", help="pass torch CPU tensors instead of numpy")
a = p.parse_args()

rng = np.random.default_rng(0)
shape = (a.heads, a.seq, a.dim)
q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
cfg = sa.Config(threshold={"value": a.threshold})
args = (q, k, v)
if a.torch:
    import torch

    args = tuple(torch.from_numpy(x) for x in args)

sa.attend(*args, cfg)  # warm-up (thread pool, page faults)
py, rust, binding = [], [], []
for _ in range(a.repeats):
    t = time.perf_counter()
    sa.attend(*args, cfg)
    py.append(time.perf_counter() - t)
    # The same call, split: its Rust computation (timed inside) and the rest (the binding).
    inner = _native._last_compute_seconds()
    binding.append((py[-1] - inner, inner))
    rust += _native._rust_attend_seconds(q, k, v, cfg, 1)
mp, mr = statistics.median(py), statistics.median(rust)
lp, lr = min(py), min(rust)
print(f"shape {shape}, Th = {a.threshold}, {'torch' if a.torch else 'numpy'} inputs, {a.repeats} runs each")
print(f"python attend : min {lp:.4f} s, median {mp:.4f} s  (runs: {', '.join(f'{x:.4f}' for x in py)})")
print(f"rust (same fn): min {lr:.4f} s, median {mr:.4f} s  (runs: {', '.join(f'{x:.4f}' for x in rust)})")
print(f"overhead: {100 * (lp / lr - 1):+.2f} % (min), {100 * (mp / mr - 1):+.2f} % (median)")
extra = [b for b, _ in binding]
share = [b / i for b, i in binding]
print(f"binding's own time per call (call - its Rust computation): median {1e3 * statistics.median(extra):.2f} ms, "
      f"max {1e3 * max(extra):.2f} ms = {100 * statistics.median(share):.2f} % (median), "
      f"{100 * max(share):.2f} % (max) of the computation")
