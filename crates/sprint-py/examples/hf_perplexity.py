"""Notebook-style walk-through: a Hugging Face causal LM with SPRINT attention.

Loads a model, evaluates perplexity with dense attention and with SPRINT attention at a
few thresholds, writes the per-layer traces of one SPRINT run and simulates them on the
S-SPRINT and S-Baseline presets.

    python examples/hf_perplexity.py                         # tiny random Qwen2 model
    python examples/hf_perplexity.py --model DIR --text FILE # a local checkpoint + text

Without --model the model is a small Qwen2 (an architecture the Rust side does not
implement) generated randomly from its config class, and the tokens are random: its
perplexity is near the vocabulary size, so read the SPRINT / dense ratio, not the value.
Needs torch and transformers (pip install "sprint-attn[hf]").
"""

# %% Imports and arguments
import argparse
import copy
import math
import os
import tempfile

import torch
import transformers

import sprint_attn as sa
import sprint_attn.hf as shf

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", help="local checkpoint folder (from_pretrained); default: random Qwen2")
parser.add_argument("--text", help="text file to score (needs --model for its tokenizer)")
parser.add_argument("--tokens", type=int, default=128, help="sequence length, tokens")
parser.add_argument("--thresholds", type=float, nargs="+", default=[-1.0, 0.0, 1.0],
                    help="SPRINT thresholds Th to try, logit units")
parser.add_argument("--out", default=None, help="folder for the traces (default: a temp dir)")
args = parser.parse_args()

# %% The model (eager attention is the reference)
torch.manual_seed(0)
if args.model:
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="eager")
    tok = transformers.AutoTokenizer.from_pretrained(args.model)
else:
    cfg = transformers.Qwen2Config(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    model = transformers.Qwen2ForCausalLM._from_config(cfg, attn_implementation="eager")
    tok = None
model.eval()

if args.text:
    if tok is None:
        raise SystemExit("--text needs --model (its tokenizer)")
    with open(args.text, encoding="utf-8") as f:
        ids = tok(f.read(), return_tensors="pt").input_ids[:, : args.tokens]
else:
    ids = torch.randint(0, model.config.vocab_size, (1, args.tokens))
print(f"model: {type(model).__name__}, {model.config.num_hidden_layers} layers, "
      f"{ids.shape[1]} tokens")


def perplexity(m):
    with torch.no_grad():
        loss = m(ids, labels=ids).loss
    return math.exp(loss.item())


# %% Dense reference: eager attention, and SPRINT's dense variant in float (must agree)
ppl_eager = perplexity(model)
dense = copy.deepcopy(model)
shf.patch(dense, {"variant": "dense", "recompute": "float"})
ppl_dense = perplexity(dense)
print(f"perplexity eager {ppl_eager:.4f}, SPRINT dense/float {ppl_dense:.4f}")

# %% SPRINT at a few thresholds
sprint_model = copy.deepcopy(model)
results = []
for th in args.thresholds:
    session = shf.patch(sprint_model, {"threshold": {"value": th}})
    ppl = perplexity(sprint_model)
    results.append((th, ppl, session.kept_fraction(), session))
    print(f"SPRINT Th = {th:+.2f}: perplexity {ppl:.4f} ({ppl / ppl_dense:.4f} x dense), "
          f"kept {100 * session.kept_fraction():.1f} % of the keys")

# %% Traces of the middle threshold: one per layer, written, then joined for the simulator
th, _, _, session = results[len(results) // 2]
out = args.out or tempfile.mkdtemp(prefix="sprint-traces-")
paths = session.write_traces(out)
print(f"wrote {len(paths)} layer traces to {out}")
trace = session.model_trace()
print(trace, trace.stats()["keep_rate_per_layer"])

# %% Simulate S-SPRINT against S-Baseline on the model's trace
report = sa.simulate(trace, presets=["s-sprint", "s-baseline"])
for d in report["designs"]:
    print(f"{d['design.name']:>12}: {d['time.cycles']} cycles, "
          f"{d['energy_pj.total'] / 1e6:.3f} uJ, {d['bytes_moved.total']} bytes moved")
try:
    print(report.to_pandas()[["time.cycles", "energy_pj.total", "vs_first.speedup"]])
except ImportError:
    pass
