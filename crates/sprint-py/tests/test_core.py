"""numpy-only tests of sprint_attn: config, attend, traces, simulate, and equality with the
`sprint` CLI on the same inputs."""

import json
import subprocess

import numpy as np
import pytest

import sprint_attn as sa


def qkv(heads=4, kv_heads=2, n=48, d=16, seed=0, layers=None):
    rng = np.random.default_rng(seed)
    lead = () if layers is None else (layers,)
    q = rng.standard_normal(lead + (heads, n, d), dtype=np.float32)
    k = rng.standard_normal(lead + (kv_heads, n, d), dtype=np.float32)
    v = rng.standard_normal(lead + (kv_heads, n, d), dtype=np.float32)
    return q, k, v


# --- Config -----------------------------------------------------------------------------


def test_config_defaults_and_roundtrip(root):
    c = sa.Config()
    d = c.to_dict()
    assert d["variant"] == "sprint" and d["threshold"]["value"] == float("-inf")
    assert sa.Config(d) == c
    assert sa.Config.from_toml(c.to_toml()) == c
    f = sa.Config.from_file(root / "configs" / "attention" / "sprint.toml")
    assert f.variant == "sprint" and f.to_dict()["threshold"]["value"] == 0.0


def test_config_overrides_merge_sections():
    c = sa.Config({"threshold": {"value": 0.5, "margin": 0.25}}, variant="dense",
                  threshold={"value": 1.0})
    d = c.to_dict()
    assert c.variant == "dense"
    assert d["threshold"]["value"] == 1.0 and d["threshold"]["margin"] == 0.25
    r = c.replace(noise={"read_sigma_fs": 0.01})
    assert r.to_dict()["noise"]["read_sigma_fs"] == pytest.approx(0.01)
    assert r.to_dict()["threshold"]["value"] == 1.0


def test_config_unknown_key_names_the_key():
    with pytest.raises(sa.SprintError, match="read_sigma"):
        sa.Config(noise={"read_sigma": 0.1})
    with pytest.raises(sa.SprintError, match="colour"):
        sa.Config(colour="red")
    with pytest.raises(sa.SprintError, match="variant"):
        sa.Config(variant="sparse")


def test_config_range_error_names_the_key():
    with pytest.raises(sa.SprintError, match=r"noise\.stuck_at_one_rate"):
        sa.Config(noise={"stuck_at_one_rate": 2.0})
    with pytest.raises(sa.SprintError, match=r"quant\.query_dac_bits"):
        sa.Config(quant={"query_dac_bits": 9})


def test_config_bad_python_values_raise():
    with pytest.raises(sa.SprintError):
        sa.Config(seed=object())
    with pytest.raises(sa.SprintError):
        sa.Config({1: 2})


def test_config_noise_presets():
    ideal = sa.Config()
    typical = sa.Config(noise={"preset": "typical"})
    assert typical.to_dict()["noise"]["preset"] == "typical"
    assert typical.to_dict()["noise"] != ideal.to_dict()["noise"]
    # A key beside the preset overrides it; replace() starts the noise table anew.
    quiet = sa.Config(noise={"preset": "typical", "read_sigma_fs": 0.0})
    assert quiet.to_dict()["noise"]["read_sigma_fs"] == 0.0
    assert ideal.replace(noise={"preset": "typical"}) == typical
    assert sa.Config({"noise": {"preset": "typical"}}) == typical
    with pytest.raises(sa.SprintError, match="preset"):
        sa.Config(noise={"preset": "awful"})


def test_config_per_layer_thresholds():
    c = sa.Config(threshold={"per_layer": [0.0, 1.0]})
    assert c.thresholds(2, 3) == [[0.0] * 3, [1.0] * 3]
    with pytest.raises(sa.SprintError, match="per_layer"):
        c.thresholds(3, 3)


# --- attend -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["dense", "runtime-pruning", "sprint-no-recompute", "sprint"])
def test_attend_every_variant(variant):
    q, k, v = qkv()
    out, s, t = sa.attend(q, k, v, {"variant": variant, "threshold": {"value": 0.0}},
                          compare_dense=True)
    assert out.shape == q.shape and out.dtype == np.float32
    assert s["variant"] == variant and t.variant == variant
    assert 0 < s["kept_fraction"] <= 1
    assert s["error_vs_dense"]["cosine"] > 0.5
    assert len(t) == 4 and t.layers == 1 and t.heads == 4


def test_dense_float_matches_numpy_attention():
    q, k, v = qkv(heads=2, kv_heads=2)
    out, _, _ = sa.attend(q, k, v, {"variant": "dense", "recompute": "float"})
    s = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    ref = (p / p.sum(-1, keepdims=True)) @ v
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_peer_variants_run_from_python():
    # Sanger keeping every key (threshold 0) and LeOPArd at -inf are dense attention; at
    # their published or a real threshold they prune, and LeOPArd's trace counts its
    # bit-planes (docs/peers.md).
    q, k, v = qkv(heads=2, kv_heads=2, n=64)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    ref = (p / p.sum(-1, keepdims=True)) @ v
    dense_sanger, _, _ = sa.attend(q, k, v, {"variant": "sanger", "peers": {"sanger": {
        "qk_bits": 4, "normalize_qk": True, "prob_threshold": 0.0}}})
    np.testing.assert_allclose(dense_sanger, ref, rtol=1e-4, atol=1e-5)
    dense_leopard, _, _ = sa.attend(q, k, v, {"variant": "leopard"})
    np.testing.assert_allclose(dense_leopard, ref, rtol=1e-4, atol=1e-5)
    _, s_sanger, _ = sa.attend(q, k, v, {"variant": "sanger"})
    assert 0 < s_sanger["softmax_fraction"] < 1
    _, s_leopard, _ = sa.attend(q, k, v, {"variant": "leopard", "threshold": {"value": 0.2}})
    assert 0 < s_leopard["softmax_fraction"] < 1
    # Energon at alpha -1 keeps every key (each round's threshold is its minimum); at its
    # published parameters, and A3 at its defaults, they prune (A3's softmax keeps at most its
    # candidates).
    dense_energon, _, _ = sa.attend(q, k, v, {"variant": "energon", "peers": {"energon": {
        "query_bits": 4, "key_bits": 4, "round_key_bits": [2, 4], "round_alpha": [-1.0, -1.0]}}})
    np.testing.assert_allclose(dense_energon, ref, rtol=1e-4, atol=1e-5)
    _, s_energon, _ = sa.attend(q, k, v, {"variant": "energon"})
    assert 0 < s_energon["softmax_fraction"] < 1
    _, s_a3, _ = sa.attend(q, k, v, sa.Config(variant="a3"))
    assert 0 < s_a3["softmax_fraction"] <= s_a3["kept_fraction"] < 1


def test_spatten_names_why_it_needs_a_model():
    # SpAtten's cascade spans the layers of a forward pass: one layer's q, k, v cannot run it
    # (docs/peers.md); the configuration itself is accepted.
    assert sa.Config(variant="spatten").variant == "spatten"
    q, k, v = qkv(heads=2, kv_heads=2, n=16)
    with pytest.raises(sa.SprintError, match="across the layers of a forward pass"):
        sa.attend(q, k, v, {"variant": "spatten"})


def test_attend_is_deterministic_and_noise_seeded():
    q, k, v = qkv()
    cfg = sa.Config(threshold={"value": 0.0}, noise={"read_sigma_fs": 0.02}, seed=7)
    a = sa.attend(q, k, v, cfg)
    b = sa.attend(q, k, v, cfg)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    c = sa.attend(q, k, v, cfg.replace(seed=8))
    assert not np.array_equal(a[1]["kept_pairs"], c[1]["kept_pairs"]) or not np.array_equal(a[0], c[0])


def test_attend_thresholds_per_head_and_layer():
    q, k, v = qkv(layers=2)
    th = np.array([[-np.inf, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    out, s, t = sa.attend(q, k, v, thresholds=th)
    assert out.shape == q.shape and t.layers == 2
    kept = [t.records(0, h)["kept"].sum() for h in range(4)]
    assert kept[0] == 48 * 48 and kept[0] > kept[1] > kept[2] > kept[3]
    with pytest.raises(sa.SprintError, match="thresholds"):
        sa.attend(q, k, v, thresholds=np.zeros(3, np.float32))


def test_attend_config_per_layer_with_layer_offset():
    q, k, v = qkv()
    cfg = sa.Config(threshold={"per_layer": [-np.inf, 0.5, 2.0]})
    _, s1, _ = sa.attend(q, k, v, cfg, layer=1, num_layers=3)
    _, s2, _ = sa.attend(q, k, v, cfg.replace(threshold={"per_layer": None, "value": 0.5}))
    assert s1["kept_pairs"] == s2["kept_pairs"]


def test_attend_padding_and_causal():
    q, k, v = qkv(n=32)
    valid = np.ones(32, bool)
    valid[28:] = False
    out, s, t = sa.attend(q, k, v, valid=valid, causal=True)
    assert np.all(out[:, 28:] == 0)
    qv, kv = t.valid(0, 0)
    assert np.array_equal(qv, valid) and np.array_equal(kv, valid)
    assert t.header["causal"] is True
    assert s["visible_pairs"] == 4 * sum(range(1, 29))


def test_bad_inputs_raise_not_crash():
    q, k, v = qkv()
    with pytest.raises(sa.SprintError, match="head_dim"):
        sa.attend(q[..., :8], k, v)
    with pytest.raises(sa.SprintError, match="shape"):
        sa.attend(q[0], k, v)
    with pytest.raises(sa.SprintError):
        sa.attend(q[:3], k, v)  # 3 heads over 2 kv heads
    with pytest.raises(sa.SprintError):
        sa.attend(q, k, v[:, :10])
    bad = q.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(sa.SprintError, match="q"):
        sa.attend(bad, k, v)
    with pytest.raises(sa.SprintError):
        sa.attend(q, k, v, valid=np.ones(5, bool))
    with pytest.raises(sa.SprintError):
        sa.attend(np.zeros((0, 4, 16), np.float32), k, v)
    with pytest.raises(TypeError):
        sa.attend(np.array([["a"]]), k, v)


def test_attend_converts_dtypes_and_layouts():
    q, k, v = qkv()
    ref, _, _ = sa.attend(q, k, v)
    out, _, _ = sa.attend(q.astype(np.float64), k, v)
    assert np.array_equal(out, ref)
    qf = np.asfortranarray(q)
    out, _, _ = sa.attend(qf, k, v)
    assert np.array_equal(out, ref)
    out, _, _ = sa.attend(q.tolist(), k, v)
    assert np.array_equal(out, ref)


# --- Trace ------------------------------------------------------------------------------


def test_trace_roundtrip_and_kept_sets(tmp_path):
    q, k, v = qkv(layers=2)
    _, s, t = sa.attend(q, k, v, {"threshold": {"value": 0.3}}, workload="unit test")
    p = tmp_path / "run.trace"
    t.write(p)
    u = sa.Trace.open(p)
    assert u.header == t.header and u.blocks() == t.blocks()
    assert u.header["workload"] == "unit test" and u.header["producer"].startswith("sprint")
    for layer, head in u.blocks():
        m = u.mask(layer, head)
        assert np.array_equal(m, t.mask(layer, head))
        sets = u.kept_sets(layer, head)
        for i in range(0, 48, 7):
            assert np.array_equal(u.kept(layer, head, i), np.flatnonzero(m[i]))
            assert np.array_equal(sets[i], np.flatnonzero(m[i]))
        assert np.array_equal(u.records(layer, head)["kept"], m.sum(1))
    st = u.stats()
    assert st["kept_pairs"] == s["kept_pairs"] and st["softmax_pairs"] == s["softmax_pairs"]
    assert st["fetched_bytes"] == s["fetched_bytes"]
    assert len(st["keep_rate_per_layer"]) == 2
    with pytest.raises(IndexError):
        u.kept(0, 9, 0)
    with pytest.raises(IndexError):
        u.kept(0, 0, 48)


def test_trace_open_bad_file_raises(tmp_path):
    p = tmp_path / "junk.trace"
    p.write_bytes(b"not a trace")
    with pytest.raises(sa.SprintError):
        sa.Trace.open(p)
    with pytest.raises(sa.SprintError):
        sa.Trace.open(tmp_path / "missing.trace")


def test_trace_concat():
    q, k, v = qkv(layers=3)
    _, _, whole = sa.attend(q, k, v, {"threshold": {"value": 0.2}})
    parts = [sa.attend(q[i], k[i], v[i], {"threshold": {"value": 0.2}}, layer=i)[2]
             for i in range(3)]
    joined = sa.Trace.concat(parts)
    assert joined.layers == 3 and joined.blocks() == whole.blocks()
    for layer, head in whole.blocks():
        assert np.array_equal(joined.mask(layer, head), whole.mask(layer, head))
    _, _, other = sa.attend(q[0][:, :16], k[0][:, :16], v[0][:, :16])
    with pytest.raises(sa.SprintError):
        sa.Trace.concat([parts[0], other])


# --- simulate ---------------------------------------------------------------------------


def test_simulate_trace_and_workload():
    q, k, v = qkv(layers=2, d=64, n=64)
    _, _, t = sa.attend(q, k, v, {"threshold": {"value": 0.0}})
    r = sa.simulate(t, presets=["s-sprint", "s-baseline"])
    assert [d["design.key"] for d in r["designs"]] == ["s-sprint", "s-baseline"]
    assert r["designs"][0]["time.cycles"] > 0
    r2 = sa.simulate("Synth-1", presets="s-sprint", overrides={"memory.trcd_ns": 30},
                     seq_len=128)
    assert r2["designs"][0]["config"]["memory"]["trcd_ns"]["value"] == 30
    with pytest.raises(sa.SprintError, match="nonsense"):
        sa.simulate(t, presets=["s-sprint"], overrides={"nonsense.key": 1})
    with pytest.raises(sa.SprintError):
        sa.simulate(t, presets=["no-such-preset"])


def test_simulate_to_pandas():
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    r = sa.simulate("Synth-1", presets=["s-sprint", "s-baseline"], seq_len=64)
    df = r.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == ["s-sprint", "s-baseline"] and "energy_pj.total" in df.columns


# --- equality with the CLI --------------------------------------------------------------


def _write_inputs(folder, q, k, v, valid=None):
    folder.mkdir()
    for name, a in (("q", q), ("k", k), ("v", v)):
        np.save(folder / f"{name}.npy", a)
    if valid is not None:
        np.save(folder / "valid.npy", valid.astype(np.uint8))


CLI_CONFIGS = [
    {"threshold": {"value": 0.25}},
    {"variant": "runtime-pruning", "threshold": {"value": 0.0}, "causal": True},
    {"variant": "sprint-no-recompute", "threshold": {"value": -0.5}},
    {"variant": "dense", "recompute": "float"},
    {"threshold": {"value": 0.0, "margin": 0.5}, "seed": 3,
     "noise": {"read_sigma_fs": 0.02, "conductance_sigma": 0.05}},
    {"threshold": {"value": 0.0}, "seed": 5, "noise": {"preset": "typical"}},
]


@pytest.mark.parametrize("cfg", CLI_CONFIGS)
def test_attend_bit_identical_to_cli(tmp_path, sprint_bin, cfg):
    q, k, v = qkv(layers=2, heads=4, kv_heads=2, n=80, d=32, seed=11)
    valid = np.ones(80, bool)
    valid[70:] = False
    _write_inputs(tmp_path / "in", q, k, v, valid)
    c = sa.Config(cfg)
    (tmp_path / "cfg.toml").write_text(c.to_toml())
    res = subprocess.run(
        [sprint_bin, "attend", "--input", str(tmp_path / "in"), "--config",
         str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "out.npy"), "--trace",
         str(tmp_path / "cli.trace"), "--json", "--compare-dense"],
        capture_output=True, text=True, check=True,
    )
    cli_summary = json.loads(res.stdout)
    cli_out = np.load(tmp_path / "out.npy")
    out, summary, trace = sa.attend(q, k, v, c, valid=valid, compare_dense=True)
    assert out.shape == cli_out.shape
    assert np.array_equal(out.view(np.uint32), cli_out.view(np.uint32)), "outputs differ in bits"
    assert summary == cli_summary
    cli_trace = sa.Trace.open(tmp_path / "cli.trace")
    assert cli_trace.blocks() == trace.blocks()
    h1, h2 = dict(cli_trace.header), dict(trace.header)
    h1.pop("workload"), h2.pop("workload")
    assert h1 == h2
    for layer, head in trace.blocks():
        assert np.array_equal(cli_trace.mask(layer, head), trace.mask(layer, head))
        r1, r2 = cli_trace.records(layer, head), trace.records(layer, head)
        for name in r1:
            assert np.array_equal(r1[name], r2[name]), name


@pytest.mark.parametrize("presets", [["s-sprint"], ["m-sprint", "m-baseline", "pruning"]])
def test_simulate_same_as_cli_json(tmp_path, sprint_bin, presets):
    q, k, v = qkv(layers=2, heads=4, kv_heads=4, n=96, d=64, seed=5)
    _, _, t = sa.attend(q, k, v, {"threshold": {"value": 0.1}})
    path = tmp_path / "t.trace"
    t.write(path)
    args = [sprint_bin, "simulate", "--trace", str(path), "--json",
            "--set", "memory.trcd_ns=25", "--energy", "optimistic"]
    for p in presets:
        args += ["--preset", p]
    cli = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    for doc in (cli,):
        doc.pop("wall_seconds"), doc.pop("peak_rss_bytes")
    py_path = dict(sa.simulate(path, presets, {"memory.trcd_ns": 25}, energy="optimistic"))
    py_path.pop("wall_seconds")
    assert py_path == cli
    py_mem = dict(sa.simulate(t, presets, {"memory.trcd_ns": 25}, energy="optimistic"))
    py_mem.pop("wall_seconds")
    assert py_mem["designs"] == cli["designs"]


def test_simulate_workload_same_as_cli_json(sprint_bin):
    args = [sprint_bin, "simulate", "--workload", "Synth-1", "--seq-len", "96", "--padding",
            "0.25", "--preset", "s-sprint", "--preset", "s-baseline", "--json"]
    cli = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    cli.pop("wall_seconds"), cli.pop("peak_rss_bytes")
    py = dict(sa.simulate("Synth-1", ["s-sprint", "s-baseline"], seq_len=96, padding=0.25))
    py.pop("wall_seconds")
    assert py == cli
