#!/usr/bin/env python3
"""Independent PyTorch perplexity of SmolLM2 windows, for checking `sprint eval`.

Reads the same GGUF file (weights dequantised to float32 with the `gguf` package) and the
same token ids (the JSON written by `sprint eval --dump-windows FILE`), runs a Llama
forward written here in plain PyTorch (RMSNorm, GGML "normal" RoPE on adjacent pairs with
the q/k weights as stored in the GGUF, grouped-query attention, SwiGLU, tied output), and
scores tokens 2..n of every window from their prefix inside the window, exactly as
`sprint eval` does (no BOS prepended; perplexity = exp(total NLL / scored tokens)).

Usage (see docs/evaluation.md):
    sprint eval --model smollm2 --task ppl-austen --seq-len 512 --limit 4 \
        --variants dense --dump-windows /tmp/windows.json
    python tools/reference/smollm2_perplexity.py \
        --gguf ~/.cache/sprint/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --windows /tmp/windows.json --threads 2

Needs: torch, numpy, gguf (pip install torch numpy gguf).
"""

import argparse
import json
import math
import time

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    if len(v) == 1:
        return v[0].item()
    return bytes(v).decode()


def load(path):
    r = GGUFReader(path)
    hp = {
        "layers": int(field(r, "llama.block_count")),
        "hidden": int(field(r, "llama.embedding_length")),
        "heads": int(field(r, "llama.attention.head_count")),
        "kv_heads": int(field(r, "llama.attention.head_count_kv")),
        "eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")),
        "rope_base": float(field(r, "llama.rope.freq_base")),
    }
    w = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        # GGML shape (ne0, ne1, ...) -> row-major (..., ne1, ne0).
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        w[t.name] = torch.from_numpy(a.reshape(shape).copy())
    if "output.weight" not in w:
        w["output.weight"] = w["token_embd.weight"]
    return hp, w


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope(x, base):
    # x: [heads, seq, d]; GGML NORM mode rotates adjacent pairs (x[2i], x[2i+1]).
    h, n, d = x.shape
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


@torch.no_grad()
def forward(hp, w, ids):
    n = len(ids)
    nh, nkv = hp["heads"], hp["kv_heads"]
    d = hp["hidden"] // nh
    x = w["token_embd.weight"][torch.tensor(ids)]
    mask = torch.full((n, n), float("-inf")).triu(1)
    for l in range(hp["layers"]):
        p = f"blk.{l}."
        h = rms_norm(x, w[p + "attn_norm.weight"], hp["eps"])
        q = (h @ w[p + "attn_q.weight"].T).view(n, nh, d).transpose(0, 1)
        k = (h @ w[p + "attn_k.weight"].T).view(n, nkv, d).transpose(0, 1)
        v = (h @ w[p + "attn_v.weight"].T).view(n, nkv, d).transpose(0, 1)
        q, k = rope(q, hp["rope_base"]), rope(k, hp["rope_base"])
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        s = q @ k.transpose(1, 2) / math.sqrt(d) + mask
        a = torch.softmax(s, dim=-1) @ v
        x = x + a.transpose(0, 1).reshape(n, nh * d) @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"], hp["eps"])
        g = torch.nn.functional.silu(h @ w[p + "ffn_gate.weight"].T)
        x = x + (g * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    x = rms_norm(x, w["output_norm.weight"], hp["eps"])
    return x @ w["output.weight"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--windows", required=True, help="JSON from sprint eval --dump-windows")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    hp, w = load(a.gguf)
    spec = json.load(open(a.windows))
    nll, count = 0.0, 0
    t0 = time.time()
    for win in spec["windows"]:
        logits = forward(hp, w, win).double()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = torch.tensor(win[1:])
        nll -= lp[torch.arange(len(win) - 1), tgt].sum().item()
        count += len(win) - 1
    print(
        json.dumps(
            {
                "task": spec.get("task"),
                "seq_len": spec.get("seq_len"),
                "windows": len(spec["windows"]),
                "scored_tokens": count,
                "mean_nll": nll / count,
                "perplexity": math.exp(nll / count),
                "seconds": time.time() - t0,
                "torch": torch.__version__,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
