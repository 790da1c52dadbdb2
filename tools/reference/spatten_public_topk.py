#!/usr/bin/env python3
"""SpAtten's cascade token pruning decided by SpAtten's own public code, on the inputs of
`kept_tokens_match_spattens_public_code` in crates/sprint-attention/tests/spatten_tests.rs.
Prints the kept tokens of every layer as the Rust constant `PUBLIC_TOPK` of that test.

The public code is `SpAttenKVCache.apply_token_pruning` of mit-han-lab/spatten
(`spatten_llm/kv_cache_token_pruning.py`, commit a0f1388). It sums the attention scores it
is given over the batch and the queries, takes `torch.topk` of `important_size` tokens
between the `start_size` first and the `recent_size` last, and slices the KV cache. Here
`start_size = recent_size = 0`, `important_size` is the layer's kept count, and the cache it
slices is the one the previous layer left (the cascade). Its cache's first key element holds
the token's index, so the kept tokens are read back from what it returns.

The importance this script hands it is the published definition (HPCA 2021, Section III-A):
every attention probability a token received, over heads and the queries of the tokens
still kept, accumulated over the layers run so far, given as stacked probability rows (the
public code sums them). The attention itself is float64 PyTorch on the same pseudo-random
inputs as the Rust test (`tests/common/mod.rs`, `random_input(500 + layer, 4, 2, 20, 20, 8)`).

Usage (the public code needs only torch):
    git clone https://github.com/mit-han-lab/spatten /tmp/spatten   # commit a0f1388
    python3 tools/reference/spatten_public_topk.py --spatten /tmp/spatten
"""

import argparse
import contextlib
import io
import math
import sys

import torch

MASK64 = (1 << 64) - 1


class Lcg:
    """The Rust tests' generator (tests/common/mod.rs), exactly: the f32 values it makes are
    exact in float64."""

    def __init__(self, seed):
        self.s = seed

    def next_f32(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & MASK64
        return ((self.s >> 40) / float(1 << 24)) * 2.0 - 1.0


def random_input(seed, heads, kv_heads, n, d):
    rng = Lcg(seed)

    def tensor(h, amp):
        return torch.tensor(
            [[[rng.next_f32() * amp for _ in range(d)] for _ in range(n)] for _ in range(h)],
            dtype=torch.float64,
        )

    q = tensor(heads, 2.0)
    k = tensor(kv_heads, 2.0)
    v = tensor(kv_heads, 1.0)
    return q, k, v


def kept_count(fraction, n):
    return max(1, min(n, math.floor(fraction * n + 1e-9)))


def run_case(cache_cls, causal, layers=4, heads=4, kv_heads=2, n=20, d=8):
    schedule = [1.0, 0.7, 0.5, 0.3]
    alive = list(range(n))
    rows = []  # probability rows over all n tokens (the accumulated importance)
    kept_per_layer = []
    group = heads // kv_heads
    for layer in range(layers):
        if layer > 0:
            k = kept_count(schedule[layer * len(schedule) // layers], n)
            # The cache the previous layer left: 2 copies of one "head" (the public code
            # selects per head; both copies carry the same importance), first element of
            # each key = the token's index.
            keys = torch.zeros(1, 2, len(alive), 2, dtype=torch.float64)
            keys[0, :, :, 0] = torch.tensor(alive, dtype=torch.float64)
            vals = keys.clone()
            probs = torch.stack(rows)[:, alive]  # [rows, alive]
            scores = probs.unsqueeze(0).unsqueeze(0).expand(1, 2, -1, -1).contiguous()
            imp = probs.sum(0)
            order = torch.sort(imp, descending=True).values
            if len(alive) > k:
                gap = (order[k - 1] - order[k]).item()
                assert gap > 1e-4, f"near tie at layer {layer}: {gap}"
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its sizes
                cache = cache_cls(start_size=0, recent_size=0, important_size=k)
            pruned = cache.apply_token_pruning([(keys, vals)], 0, [scores])
            alive = sorted(int(x) for x in pruned[0][0][0, 0, :, 0].tolist())
        kept_per_layer.append(list(alive))
        q, kk, v = random_input(500 + layer, heads, kv_heads, n, d)
        for h in range(heads):
            kvh = h // group
            for i in range(n):
                cand = [j for j in alive if (not causal or j <= i)]
                if not cand or i not in alive:
                    continue
                logits = torch.stack([q[h, i] @ kk[kvh, j] for j in cand]) / math.sqrt(d)
                p = torch.softmax(logits, 0)
                row = torch.zeros(n, dtype=torch.float64)
                row[cand] = p
                rows.append(row)
    return kept_per_layer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spatten", required=True, help="a checkout of mit-han-lab/spatten")
    a = ap.parse_args()
    sys.path.insert(0, a.spatten)
    from spatten_llm.kv_cache_token_pruning import SpAttenKVCache

    print("const PUBLIC_TOPK: &[(bool, &[&[usize]])] = &[")
    for causal in (False, True):
        layers = run_case(SpAttenKVCache, causal)
        print(f"    (\n        {str(causal).lower()},\n        &[")
        for kept in layers:
            print("            &[" + ", ".join(str(j) for j in kept) + "],")
        print("        ],\n    ),")
    print("];")


if __name__ == "__main__":
    main()
