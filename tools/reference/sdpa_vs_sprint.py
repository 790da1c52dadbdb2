#!/usr/bin/env python3
"""PyTorch `scaled_dot_product_attention` (f32, dense) against `sprint attend` (the functional
SPRINT model at about 20 % kept keys) on the same tensors and thread count, measured side by
side in alternating rounds. Prints both times per round and their ratio
(docs/performance.md).

The tensors come from `sprint synth` (attention with a positional locality pattern, like
real heads). The SPRINT threshold is the (1 - keep) quantile of the exact logits of all
heads, so about `keep` of the keys survive. Timed on both sides: the attention call alone,
median of `--reps` calls per round (no file I/O); `sprint attend --repeat` reports the median
wall time of one pass over every head.

Usage:
    cargo build --release -p sprint-cli
    python tools/reference/sdpa_vs_sprint.py --threads 2

Needs: torch, numpy, safetensors.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import torch
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sprint", default="target/release/sprint", help="the sprint binary")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=float, default=0.2, help="target kept fraction of SPRINT")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per side and round")
    ap.add_argument("--set", action="append", default=[], help="extra `sprint attend --set`")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    work = tempfile.mkdtemp(prefix="sdpa_vs_sprint_")
    qkv = os.path.join(work, "qkv.safetensors")
    subprocess.run(
        [a.sprint, "synth", "--out", qkv, "--heads", str(a.heads), "--seq", str(a.seq),
         "--head-dim", str(a.dim), "--seed", "0"],
        check=True,
    )
    t = {k: torch.from_numpy(v.astype(np.float32)) for k, v in load_file(qkv).items()}
    q, k, v = t["q"].unsqueeze(0), t["k"].unsqueeze(0), t["v"].unsqueeze(0)
    with torch.no_grad():
        logits = (q @ k.transpose(-1, -2)) / a.dim**0.5
        flat = logits.flatten()
        idx = int((1.0 - a.keep) * (flat.numel() - 1))
        th = float(flat.kthvalue(idx + 1).values)
        del logits, flat

    def sdpa_ms():
        times = []
        with torch.no_grad():
            torch.nn.functional.scaled_dot_product_attention(q, k, v)  # warm-up
            for _ in range(a.reps):
                t0 = time.perf_counter()
                torch.nn.functional.scaled_dot_product_attention(q, k, v)
                times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)

    def sprint_ms():
        cmd = [a.sprint, "attend", "--input", qkv, "--out", os.path.join(work, "out.safetensors"),
               "--threshold", repr(th), "--threads", str(a.threads), "--repeat", str(a.reps),
               "--json"]
        for s in a.set:
            cmd += ["--set", s]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        summary = json.loads(out)
        return 1e3 * summary["pass_seconds"], summary["kept_fraction"], summary["softmax_fraction"]

    print(f"{a.heads} heads x {a.seq} tokens x d {a.dim}, {a.threads} threads, "
          f"torch {torch.__version__}, threshold {th:.4f} logits")
    print(f"{'round':>5} {'torch SDPA ms':>14} {'sprint ms':>10} {'kept %':>7} {'ratio':>6}")
    ratios = []
    for r in range(a.rounds):
        ts = sdpa_ms()
        ms, kept, soft = sprint_ms()
        ratios.append(ts / ms)
        print(f"{r:>5} {ts:>14.1f} {ms:>10.1f} {100 * kept:>7.1f} {ts / ms:>6.2f}")
    print(f"ratio torch / sprint: median {statistics.median(ratios):.2f} "
          f"(>= 1 means SPRINT's functional model is faster); softmax kept {100 * soft:.1f} %")


if __name__ == "__main__":
    main()
