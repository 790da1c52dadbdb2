"""Hugging Face transformers with SPRINT attention, on tiny models generated randomly from
their config classes (no download). Skipped when torch or transformers is missing."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install transformers)"
)

import sprint_attn as sa  # noqa: E402
import sprint_attn.hf as shf  # noqa: E402

DENSE = {"variant": "dense", "recompute": "float"}


def tiny(kind):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
        cls = transformers.LlamaForCausalLM
    elif kind == "qwen2":
        cfg = transformers.Qwen2Config(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128)
        cls = transformers.Qwen2ForCausalLM
    elif kind == "bert":
        cfg = transformers.BertConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128)
        cls = transformers.BertModel
    elif kind == "vit":
        cfg = transformers.ViTConfig(
            image_size=32, patch_size=8, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4)
        cls = transformers.ViTModel
    else:
        raise ValueError(kind)
    return cls._from_config(cfg, attn_implementation="eager").eval()


def inputs(kind, pad=True):
    torch.manual_seed(1)
    if kind == "vit":
        return {"pixel_values": torch.randn(2, 3, 32, 32)}, None
    ids = torch.randint(0, 128, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    if pad:
        if kind == "bert":
            mask[1, 15:] = 0  # right padding (encoder)
        else:
            mask[1, :4] = 0  # left padding (decoder)
    return {"input_ids": ids, "attention_mask": mask}, mask.bool()


def output(model, x):
    with torch.no_grad():
        o = model(**x)
    return o.logits if hasattr(o, "logits") else o.last_hidden_state


@pytest.mark.parametrize("kind", ["llama", "qwen2", "bert", "vit"])
def test_dense_float_equals_eager(kind):
    model = tiny(kind)
    x, valid = inputs(kind)
    ref = output(model, x)
    patched = copy.deepcopy(model)
    session = shf.patch(patched, DENSE)
    got = output(patched, x)
    if valid is not None:
        ref, got = ref[valid], got[valid]
    rel = ((got - ref).norm() / ref.norm()).item()
    assert rel < 1e-4, rel
    layers = model.config.num_hidden_layers
    assert len(session.records) == 2 * layers  # one per layer and batch element
    assert [t.layers for t in session.traces(batch=0)] == [1] * layers


@pytest.mark.parametrize("kind", ["llama", "qwen2", "bert"])
def test_sprint_prunes_and_traces_simulate(kind, tmp_path):
    model = tiny(kind)
    x, _ = inputs(kind)
    session = shf.patch(model, {"threshold": {"value": 0.0}})
    output(model, x)
    assert 0 < session.kept_fraction() < 1
    t = session.model_trace(batch=0)
    assert t.layers == model.config.num_hidden_layers
    assert t.header["causal"] is (kind != "bert")
    paths = session.write_traces(str(tmp_path), batch=1)
    assert len(paths) == t.layers
    assert sa.Trace.open(paths[0]).blocks() == [(0, h) for h in range(4)]
    r = sa.simulate(t, presets=["s-sprint", "s-baseline"])
    assert r["designs"][0]["time.cycles"] > 0


def test_per_layer_thresholds_follow_layer_idx():
    model = tiny("qwen2")
    x, _ = inputs("qwen2", pad=False)
    session = shf.patch(model, {"threshold": {"per_layer": [-np.inf, 0.0, 100.0]}})
    output(model, x)
    kept = {r.layer: r.summary["kept_fraction"] for r in session.records if r.batch == 0}
    assert kept[0] == 1.0 and 0 < kept[1] < 1 and kept[2] < kept[1]


def test_registry_attn_implementation_sprint():
    shf.register()
    shf.set_default(DENSE)
    model = tiny("llama")
    x, valid = inputs("llama")
    ref = output(model, x)
    cfg = copy.deepcopy(model.config)
    m2 = type(model)._from_config(cfg, attn_implementation="sprint").eval()
    m2.load_state_dict(model.state_dict())
    assert m2.config._attn_implementation == "sprint"
    got = output(m2, x)
    assert ((got - ref)[valid].norm() / ref[valid].norm()).item() < 1e-4


def test_unsupported_mask_raises_not_dense():
    torch.manual_seed(0)
    cfg = transformers.MistralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=4)
    model = transformers.MistralForCausalLM._from_config(cfg, attn_implementation="eager").eval()
    shf.patch(model, DENSE)
    with pytest.raises(shf.SprintUnsupported, match="mask"):
        output(model, {"input_ids": torch.randint(0, 128, (1, 12))})


def test_model_without_attention_backend_raises():
    class Plain(torch.nn.Module):
        pass

    with pytest.raises(shf.SprintUnsupported, match="AttentionInterface"):
        shf.patch(Plain(), DENSE)


def test_training_dropout_raises():
    model = tiny("bert")
    model.config.attention_probs_dropout_prob = 0.5
    for m in model.modules():
        if hasattr(m, "dropout_prob"):
            m.dropout_prob = 0.5
    shf.patch(model, DENSE)
    model.train()
    x, _ = inputs("bert")
    with pytest.raises(shf.SprintUnsupported, match="dropout"):
        model(**x)


def test_generate_with_kv_cache_matches_eager():
    model = tiny("llama")
    model.generation_config.pad_token_id = 0
    x, _ = inputs("llama")  # batch 2, the second left-padded
    with torch.no_grad():
        ref = model.generate(**x, max_new_tokens=5, do_sample=False)
    patched = copy.deepcopy(model)
    session = shf.patch(patched, DENSE)
    with torch.no_grad():
        got = patched.generate(**x, max_new_tokens=5, do_sample=False)
    assert torch.equal(got, ref)
    shapes = {(r.summary["n_queries"], r.summary["n_keys"]) for r in session.records}
    assert (20, 20) in shapes and (1, 24) in shapes  # prefill, then one query per step


def test_traces_are_per_forward_pass():
    model = tiny("qwen2")
    x, _ = inputs("qwen2", pad=False)
    session = shf.patch(model, {"threshold": {"value": 0.0}})
    output(model, x)
    output(model, x)
    assert {r.forward for r in session.records} == {0, 1}
    assert len(session.traces()) == 3 and len(session.traces(forward=0)) == 3
    assert session.model_trace().layers == 3


def test_additive_biases_raise():
    q = torch.randn(1, 2, 4, 8)
    k = torch.randn(1, 2, 4, 8)
    module = torch.nn.Module()
    module._sprint_session = shf.Session(sa.Config(DENSE))
    with pytest.raises(shf.SprintUnsupported, match="position_bias"):
        shf.sprint_attention_forward(module, q, k, k, None, position_bias=torch.ones(1, 2, 4, 4))
    bias_mask = torch.zeros(1, 1, 4, 4)
    bias_mask[..., 0] = -1.5
    with pytest.raises(shf.SprintUnsupported, match="additive bias"):
        shf.sprint_attention_forward(module, q, k, k, bias_mask)
    # A float mask of 0 / -inf (eager style) is a plain mask.
    causal = torch.full((4, 4), torch.finfo(torch.float32).min).triu(1)[None, None]
    out, _ = shf.sprint_attention_forward(module, q, k, k, causal)
    assert out.shape == (1, 4, 2, 8)
    assert len(module._sprint_session.records) == 1
    assert module._sprint_session.records[0].trace.header["causal"] is True


def test_t5_is_refused():
    cfg = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                num_heads=4)
    model = transformers.T5EncoderModel._from_config(cfg, attn_implementation="eager").eval()
    # T5's attention dispatches through the registry, so it is patched; its first call
    # carries the relative position bias, which SPRINT cannot add, and is refused.
    shf.patch(model, DENSE)
    with pytest.raises(shf.SprintUnsupported, match="bias"):
        model(input_ids=torch.randint(0, 64, (1, 6)))


def tiny_bart():
    torch.manual_seed(0)
    cfg = transformers.BartConfig(
        vocab_size=128, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
        decoder_ffn_dim=128, max_position_embeddings=128, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    cls = transformers.BartForConditionalGeneration
    return cls._from_config(cfg, attn_implementation="eager").eval()


def bart_inputs():
    torch.manual_seed(1)
    ids = torch.randint(3, 128, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 15:] = 0  # the second source right-padded
    return ids, mask


def test_bart_encoder_decoder_cross_attention_equals_eager():
    """Encoder self-attention (padded), decoder causal self-attention and cross-attention
    (encoder padding as key padding) through SPRINT's dense float datapath equal eager."""
    model = tiny_bart()
    ids, mask = bart_inputs()
    dec = torch.randint(3, 128, (2, 7))
    x = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec}
    with torch.no_grad():
        ref = model(**x).logits
    patched = copy.deepcopy(model)
    session = shf.patch(patched, DENSE)
    with torch.no_grad():
        got = patched(**x).logits
    assert (got - ref).abs().max().item() < 1e-5
    # 2 encoder + 2 decoder self + 2 cross layers, numbered once each, per batch element.
    assert session.num_layers == 6
    assert sorted({r.layer for r in session.records}) == list(range(6))
    shapes = {(r.layer, r.summary["n_queries"], r.summary["n_keys"]) for r in session.records}
    assert (0, 20, 20) in shapes and (3, 7, 20) in shapes  # encoder layer 0, a cross layer
    causal = {r.layer: r.trace.header["causal"] for r in session.records}
    assert [causal[i] for i in range(6)] == [False, False, True, False, True, False]
    assert len(session.traces(batch=1)) == 6


def test_bart_greedy_generate_matches_eager():
    model = tiny_bart()
    ids, mask = bart_inputs()
    with torch.no_grad():
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6,
                             do_sample=False, num_beams=1)
    patched = copy.deepcopy(model)
    session = shf.patch(patched, DENSE)
    with torch.no_grad():
        got = patched.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6,
                               do_sample=False, num_beams=1)
    assert torch.equal(got, ref)
    assert any(r.summary["n_queries"] == 1 and r.summary["n_keys"] == 20
               for r in session.records)  # one cross-attention query per step


def test_module_computing_attention_itself_is_refused():
    class OwnAttention(torch.nn.Module):
        def forward(self, x):
            return torch.softmax(x @ x.transpose(-1, -2), -1) @ x

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny("bert")
            self.extra = OwnAttention()

    with pytest.raises(shf.SprintUnsupported, match="OwnAttention computes attention itself"):
        shf.patch(Net(), DENSE)
