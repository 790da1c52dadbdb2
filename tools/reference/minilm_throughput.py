#!/usr/bin/env python3
"""PyTorch eager throughput of all-MiniLM-L6-v2 on BBC News at 256 tokens, for comparison
with `sprint eval --model minilm --task bbc --variants dense` (docs/evaluation.md).

A plain PyTorch BERT forward written here (no sentence-transformers, no transformers):
weights from the same model.safetensors, tokens from the same tokenizer.json
(`tokenizers`), [CLS] text [SEP] cut to 256 ids, batches of 16 right-padded with an
attention mask, mean pooling over real tokens, L2 normalisation. Tokenisation is timed
together with the forward, as in `sprint eval`.

Usage:
    python tools/reference/minilm_throughput.py --model ~/.cache/sprint/minilm \
        --bbc ~/.cache/sprint/bbc --docs 160 --threads 2

Needs: torch, safetensors, tokenizers.
"""

import argparse
import json
import math
import os
import time

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer


def bert(w, cfg, ids, mask):
    b, n = ids.shape
    hdim = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    d = hdim // nh
    eps = cfg.get("layer_norm_eps", 1e-12)
    ln = torch.nn.functional.layer_norm
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n][None]
        + w["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    x = ln(x, (hdim,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    bias = (1.0 - mask[:, None, None, :].float()) * -1e30
    lin = torch.nn.functional.linear
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        def proj(name, t):
            return lin(t, w[p + name + ".weight"], w[p + name + ".bias"])
        q = proj("attention.self.query", x).view(b, n, nh, d).transpose(1, 2)
        k = proj("attention.self.key", x).view(b, n, nh, d).transpose(1, 2)
        v = proj("attention.self.value", x).view(b, n, nh, d).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, n, hdim)
        x = ln(x + proj("attention.output.dense", a), (hdim,),
               w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = torch.nn.functional.gelu(proj("intermediate.dense", x))
        x = ln(x + proj("output.dense", h), (hdim,),
               w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    m = mask[..., None].float()
    e = (x * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(e, dim=-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--bbc", required=True)
    ap.add_argument("--docs", type=int, default=160)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    w = load_file(os.path.join(a.model, "model.safetensors"))
    w = {k.removeprefix("bert."): v for k, v in w.items()}
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    cls, sep, pad = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]"), tok.token_to_id("[PAD]")
    paths = sorted(
        os.path.join(dp, f) for dp, _, fs in os.walk(a.bbc) for f in fs if f.endswith(".txt")
    )[: a.docs]
    texts = [open(p, "rb").read().decode("utf-8", errors="replace") for p in paths]

    def run():
        tokens = 0
        for i in range(0, len(texts), a.batch):
            seqs = []
            for t in texts[i : i + a.batch]:
                ids = tok.encode(t, add_special_tokens=False).ids[: a.seq_len - 2]
                seqs.append([cls] + ids + [sep])
            n = max(len(s) for s in seqs)
            tokens += sum(len(s) for s in seqs)
            ids = torch.tensor([s + [pad] * (n - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])
            with torch.inference_mode():
                bert(w, cfg, ids, mask)
        return tokens

    run()  # warm-up
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        tokens = run()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(json.dumps({
        "documents": len(texts), "tokens": tokens, "threads": a.threads,
        "best_seconds": best, "documents_per_second": len(texts) / best,
        "tokens_per_second": tokens / best, "torch": torch.__version__,
    }, indent=1))


if __name__ == "__main__":
    main()
