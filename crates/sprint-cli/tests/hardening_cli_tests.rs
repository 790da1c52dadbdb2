//! Issue #11 (hardening), through the binary: every bad input, absurd value and interruption
//! gets a one-line refusal, a non-zero exit, no panic, and no clobbered or half-written file.
//! Test names start with the row of the table they reproduce.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::{Dtype, tensor::TensorView};

fn sprint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sprint"));
    c.env_remove("RUST_BACKTRACE");
    c
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Deterministic values in [-2, 2).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// A safetensors file of `(name, dtype, shape, raw little-endian bytes)`.
fn write_st(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, dt, s, b)| (n.to_string(), TensorView::new(*dt, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// q, k, v of `shape` in f32.
fn qkv(shape: &[usize]) -> Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> {
    let n: usize = shape.iter().product();
    ["q", "k", "v"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                *name,
                Dtype::F32,
                shape.to_vec(),
                f32_bytes(&values(n, i as u64)),
            )
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Runs `sprint ARGS` in `dir` expecting a refusal: exit 1, one `error:` line, no panic,
/// and no file added or changed in `dir`. Returns stderr.
fn refuse(dir: &Path, args: &[&str]) -> String {
    let before: Vec<(PathBuf, Vec<u8>)> = files_in(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let out = sprint().current_dir(dir).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let after: Vec<(PathBuf, Vec<u8>)> = files_in(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert!(
        before == after,
        "{args:?}: files changed: {:?}",
        files_in(dir)
    );
    err
}

fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = sprint().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `sprint simulate --preset s-sprint ARGS --json`, which must succeed: its JSON document.
fn s_sprint_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["simulate", "--preset", "s-sprint"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_slice(&run_ok(dir, &all).stdout).unwrap()
}

#[test]
fn row01_zero_layer_input_is_a_shape_error() {
    let d = tmp();
    write_st(&d.path().join("in.safetensors"), &qkv(&[0, 2, 32, 16]));
    let e = refuse(
        d.path(),
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
        ],
    );
    assert!(e.contains("tensor `q` has shape [0, 2, 32, 16]"), "{e}");
    assert!(e.contains("must be > 0"), "{e}");
    write_st(&d.path().join("z3.safetensors"), &qkv(&[2, 0, 16]));
    let e = refuse(
        d.path(),
        &[
            "attend",
            "--input",
            "z3.safetensors",
            "--out",
            "o.safetensors",
        ],
    );
    assert!(e.contains("must be > 0"), "{e}");
}

#[test]
fn row02_simulate_refuses_absurd_sequence_lengths_early() {
    let d = tmp();
    for n in ["4294967295", "2147483648", "1000000", "16385"] {
        let t0 = std::time::Instant::now();
        let e = refuse(
            d.path(),
            &[
                "simulate",
                "--preset",
                "s-sprint",
                "--workload",
                "ViT-B",
                "--seq-len",
                n,
            ],
        );
        assert!(e.contains("exceeds the limit of 16384 tokens"), "{e}");
        assert!(
            t0.elapsed().as_secs() < 10,
            "refusal took {:?}",
            t0.elapsed()
        );
    }
    let e = refuse(
        d.path(),
        &[
            "simulate",
            "--preset",
            "s-sprint",
            "--workload",
            "ViT-B",
            "--seq-len",
            "0",
        ],
    );
    assert!(e.contains("must be > 0"), "{e}");
}

#[test]
fn row03_thread_counts_over_the_limit_are_refused() {
    let d = tmp();
    write_st(&d.path().join("in.safetensors"), &qkv(&[2, 8, 16]));
    let cases: [&[&str]; 3] = [
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
            "--threads",
            "100000",
        ],
        &[
            "simulate",
            "--preset",
            "s-sprint",
            "--workload",
            "ViT-B",
            "--threads",
            "100000",
        ],
        &[
            "eval",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--threads",
            "100000",
        ],
    ];
    let e = refuse(
        d.path(),
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
            "--repeat",
            "1000000",
        ],
    );
    assert!(e.contains("--repeat 1000000: at most 1000"), "{e}");
    for args in cases {
        let e = refuse(d.path(), args);
        assert!(
            e.contains("--threads 100000: exceeds the limit of 256 worker threads"),
            "{e}"
        );
    }
}

/// A valid trace whose heads are large when decoded (`n` x `n` bits each) but small on
/// disk (one kept key per query).
fn big_trace(path: &Path, heads: u32, n: u32) {
    use sprint_core::bits::{BitMatrix, BitVec};
    use sprint_core::trace::{HeadTrace, QueryRecord, TraceHeader, TraceWriter};
    let header = TraceHeader {
        producer: "test".into(),
        workload: "big".into(),
        variant: "sprint".into(),
        layers: 1,
        heads,
        kv_heads: heads,
        head_dim: 64,
        n_queries: n,
        n_keys: n,
        causal: false,
        // 32 + 32 + 64 + 64 + 2 bytes per key and query.
        bytes: sprint_attention::summary::kind_bytes(64, 2),
        k_buffer_bytes: 8192,
        v_buffer_bytes: 8192,
        locality_policy: sprint_core::config::LocalityPolicy::SldStrict,
        provenance: None,
    };
    let n = n as usize;
    let mut masks = BitMatrix::zeros(n, n);
    for i in 0..n {
        masks.set(i, i, true);
    }
    let rec = QueryRecord {
        kept: 1,
        softmax_kept: 1,
        k_fetched: 1,
        k_reused: 0,
        k_streamed: 0,
        v_fetched: 1,
        v_reused: 0,
        v_streamed: 0,
    };
    let mut head = HeadTrace {
        layer: 0,
        head: 0,
        kv_head: 0,
        query_valid: BitVec::ones(n),
        key_valid: BitVec::ones(n),
        masks,
        records: vec![rec; n],
        stats: Default::default(),
    };
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = TraceWriter::new(f, &header).unwrap();
    for h in 0..heads {
        head.head = h;
        head.kv_head = h;
        w.write_head(&head).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn row04_trace_replay_memory_is_bounded_whatever_the_thread_count() {
    let d = tmp();
    let trace = d.path().join("big.trace");
    // 10 heads of 32768 x 32768 kept bits: 128 MiB each once decoded, a small file.
    big_trace(&trace, 10, 32768);
    assert!(std::fs::metadata(&trace).unwrap().len() < 8 << 20);
    let doc = s_sprint_json(d.path(), &["--trace", "big.trace", "--threads", "8"]);
    let peak = doc["peak_rss_bytes"].as_u64().unwrap();
    // 2 x 8 threads = all 10 heads (1.25 GiB) were decoded at once before; now 512 MiB.
    eprintln!("peak memory {} MiB", peak >> 20);
    assert!(peak < 900 << 20, "peak {} MiB", peak >> 20);
}

#[test]
fn row05_attend_refuses_inputs_over_the_pair_limit_with_the_reason() {
    let d = tmp();
    write_st(&d.path().join("long.safetensors"), &qkv(&[1, 65536, 4]));
    let t0 = std::time::Instant::now();
    let e = refuse(
        d.path(),
        &[
            "attend",
            "--input",
            "long.safetensors",
            "--out",
            "o.safetensors",
        ],
    );
    assert!(
        e.contains("65536 queries x 65536 keys = 4294967296 query-key pairs per head exceeds the limit of 2147483648"),
        "{e}"
    );
    assert!(e.contains("docs/limits.md"), "{e}");
    assert!(t0.elapsed().as_secs() < 20);
}

#[test]
fn row06_absurd_memory_timings_are_refused() {
    let d = tmp();
    for (set, key) in [
        ("memory.trcd_ns=1e30", "memory.trcd_ns"),
        ("memory.bus_bytes_per_ns=1e-30", "memory.bus_bytes_per_ns"),
        ("memory.taxth_ns=1e30", "memory.taxth_ns"),
        ("memory.tcl_ns=1e17", "memory.tcl_ns"),
        ("memory.trp_ns=1e7", "memory.trp_ns"),
    ] {
        let e = refuse(
            d.path(),
            &[
                "simulate",
                "--preset",
                "s-sprint",
                "--workload",
                "ViT-B",
                "--set",
                set,
            ],
        );
        assert!(e.contains(key) && e.contains("limit"), "{set}: {e}");
    }
    // The largest accepted latency still gives sane, non-wrapped counts.
    let doc = s_sprint_json(
        d.path(),
        &["--workload", "ViT-B", "--set", "memory.trcd_ns=1e6"],
    );
    let cycles = doc["designs"][0]["time.cycles"].as_u64().unwrap();
    assert!(cycles > 1_000_000 && cycles < 1 << 62, "{cycles}");
}

#[test]
fn row07_outputs_never_overwrite_inputs_or_each_other() {
    let d = tmp();
    write_st(&d.path().join("in.safetensors"), &qkv(&[2, 8, 16]));
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "in.safetensors",
            ],
            "--out in.safetensors: is the input --input",
        ),
        (
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "./x/../in.safetensors",
            ],
            "refusing to overwrite an input",
        ),
        (
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "o.safetensors",
                "--trace",
                "in.safetensors",
            ],
            "--trace in.safetensors: is the input --input",
        ),
        (
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "o.safetensors",
                "--trace",
                "o.safetensors",
            ],
            "--trace o.safetensors: is also the output of --out",
        ),
        (
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "nodir/o.safetensors",
            ],
            "folder nodir does not exist",
        ),
    ];
    std::fs::create_dir(d.path().join("x")).unwrap();
    for (args, want) in cases {
        let e = refuse(d.path(), args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    run_ok(
        d.path(),
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
            "--trace",
            "t.trace",
        ],
    );
    let e = refuse(
        d.path(),
        &[
            "simulate",
            "--measure-stats",
            "t.trace",
            "--trace",
            "t.trace",
        ],
    );
    assert!(
        e.contains("--measure-stats t.trace: is the input --trace"),
        "{e}"
    );
    let e = refuse(
        d.path(),
        &[
            "eval",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--variants",
            "sprint",
            "--trace",
            "t.trace",
            "--config",
            "t.trace",
        ],
    );
    assert!(e.contains("refusing to overwrite an input"), "{e}");
}

#[test]
fn row08_one_dtype_rule_for_data_and_masks_and_exact_scale_counts() {
    let d = tmp();
    let p = d.path();
    for dt in [Dtype::BOOL, Dtype::U8, Dtype::I8, Dtype::I32] {
        let mut t = qkv(&[2, 8, 16]);
        t[0] = (
            "q",
            dt,
            vec![2, 8, 16],
            vec![1u8; 2 * 8 * 16 * dt.bitsize() / 8],
        );
        write_st(&p.join("int.safetensors"), &t);
        let e = refuse(
            p,
            &[
                "attend",
                "--input",
                "int.safetensors",
                "--out",
                "o.safetensors",
            ],
        );
        assert!(e.contains("not supported for q, k, v"), "{dt:?}: {e}");
    }
    // A `valid` mask in int64 (numpy's default integer), bool or u8 is accepted.
    for (dt, bytes) in [
        (
            Dtype::I64,
            (0..8i64)
                .flat_map(|i| i64::from(i < 6).to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
        (Dtype::BOOL, (0..8u8).map(|i| u8::from(i < 6)).collect()),
        (Dtype::U8, (0..8u8).map(|i| u8::from(i < 6)).collect()),
        (
            Dtype::F32,
            f32_bytes(
                &(0..8)
                    .map(|i| if i < 6 { 1.0 } else { 0.0 })
                    .collect::<Vec<_>>(),
            ),
        ),
    ] {
        let mut t = qkv(&[2, 8, 16]);
        t.push(("valid", dt, vec![8], bytes));
        write_st(&p.join("masked.safetensors"), &t);
        run_ok(
            p,
            &[
                "attend",
                "--input",
                "masked.safetensors",
                "--out",
                "o.safetensors",
            ],
        );
    }
    let mut t = qkv(&[2, 8, 16]);
    t.push(("valid", Dtype::F8_E4M3, vec![8], vec![0x38; 8]));
    write_st(&p.join("f8mask.safetensors"), &t);
    let e = refuse(
        p,
        &[
            "attend",
            "--input",
            "f8mask.safetensors",
            "--out",
            "o2.safetensors",
        ],
    );
    assert!(e.contains("mask dtype"), "{e}");
    assert!(!e.contains("use f32, f16 or bf16"), "{e}");

    // Fixed scales: more values than heads are refused like fewer.
    write_st(&p.join("in.safetensors"), &qkv(&[2, 8, 16]));
    for (q, want) in [
        (
            "[0.1, 0.1, 0.1]",
            "3 per-head scales given for 2 query heads",
        ),
        ("[0.1]", "1 per-head scales given for 2 query heads"),
    ] {
        std::fs::write(
            p.join("sc.toml"),
            format!("[quant]\nscales = {{ fixed = {{ q = {q}, k = 0.1, v = 0.1 }} }}\n"),
        )
        .unwrap();
        let e = refuse(
            p,
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "o3.safetensors",
                "--config",
                "sc.toml",
            ],
        );
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn row08_npy_masks_in_int64_are_accepted() {
    let d = tmp();
    let p = d.path();
    let dir = p.join("npy");
    std::fs::create_dir(&dir).unwrap();
    let write = |name: &str, shape: &[u64], data: &[f32]| {
        use npyz::WriterBuilder;
        let mut bytes = Vec::new();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
        std::fs::write(dir.join(format!("{name}.npy")), bytes).unwrap();
    };
    for (i, n) in ["q", "k", "v"].iter().enumerate() {
        write(n, &[2, 8, 16], &values(256, i as u64));
    }
    let mut mask = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<i64>::new()
            .default_dtype()
            .shape(&[8])
            .writer(&mut mask)
            .begin_nd()
            .unwrap();
        w.extend((0..8).map(|i| i64::from(i < 5))).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(dir.join("valid.npy"), mask).unwrap();
    run_ok(p, &["attend", "--input", "npy", "--out", "o.safetensors"]);
    // Truncated: a clear message, not "failed to fill whole buffer".
    let q = std::fs::read(dir.join("q.npy")).unwrap();
    std::fs::write(dir.join("q.npy"), &q[..q.len() - 100]).unwrap();
    let e = refuse(p, &["attend", "--input", "npy", "--out", "o2.safetensors"]);
    assert!(e.contains("q.npy: truncated .npy file"), "{e}");
}

/// Starts `sprint ARGS` in `dir`, sends `signal` as soon as a hidden temporary output file
/// appears, and returns the exit code; `None` if the run ended before any was seen.
fn interrupt_while_writing(dir: &Path, args: &[&str], signal: &str) -> Option<i32> {
    let mut child = sprint().current_dir(dir).args(args).spawn().unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let _ = st;
            return None;
        }
        let writing = files_in(dir)
            .iter()
            .any(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"));
        if writing {
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            return child.wait().unwrap().code();
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

#[test]
fn row09_signals_while_writing_leave_only_complete_files() {
    let d = tmp();
    let p = d.path();
    // Large enough that writing the output and trace takes a while.
    write_st(&p.join("in.safetensors"), &qkv(&[8, 1024, 64]));
    let mut caught = 0;
    for (attempt, signal) in ["-INT", "-TERM", "-INT", "-TERM", "-INT", "-TERM"]
        .iter()
        .enumerate()
    {
        let out = format!("o{attempt}.safetensors");
        let trace = format!("t{attempt}.trace");
        let code = interrupt_while_writing(
            p,
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                &out,
                "--trace",
                &trace,
                "--threshold",
                "0.5",
            ],
            signal,
        );
        // Only complete files: no temporary left; the output and the trace both or neither.
        for f in files_in(p) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            assert!(!name.starts_with('.'), "left behind: {name}");
        }
        let (o, t) = (p.join(&out), p.join(&trace));
        if let Some(c) = code {
            caught += 1;
            let want = if *signal == "-INT" { 130 } else { 143 };
            assert!(c == want || c == 0, "exit {c}");
            if c == want {
                assert!(!t.exists() || o.exists(), "trace without output");
            }
        }
        if o.exists() {
            let b = std::fs::read(&o).unwrap();
            assert!(safetensors::SafeTensors::deserialize(&b).is_ok());
        }
        if t.exists() {
            assert!(sprint_core::trace::read_trace(&t).is_ok());
        }
        if caught >= 2 {
            break;
        }
    }
    assert!(caught >= 1, "never caught a run while it was writing");
}

#[test]
fn row12_ignored_flags_are_refused() {
    let d = tmp();
    let p = d.path();
    write_st(&p.join("in.safetensors"), &qkv(&[2, 8, 16]));
    run_ok(
        p,
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
            "--trace",
            "t.trace",
        ],
    );
    for (flag, val) in [
        ("--seq-len", "128"),
        ("--padding", "0.5"),
        ("--stats", "s.toml"),
    ] {
        let e = refuse(
            p,
            &[
                "simulate", "--preset", "s-sprint", "--trace", "t.trace", flag, val,
            ],
        );
        assert!(
            e.contains(&format!("{flag} cannot be used with --trace")),
            "{e}"
        );
    }
    for args in [
        &["simulate", "--compare-paper", "--workload", "ViT-B"][..],
        &["simulate", "--compare-paper", "--preset", "s-sprint"][..],
    ] {
        let e = refuse(p, args);
        assert!(e.contains("cannot be used with --compare-paper"), "{e}");
    }
    for (flag, val) in [
        ("--energy", "optimistic"),
        ("--preset", "s-sprint"),
        ("--set", "memory.trcd_ns=20"),
    ] {
        let e = refuse(
            p,
            &[
                "simulate",
                "--measure-stats",
                "m.toml",
                "--trace",
                "t.trace",
                flag,
                val,
            ],
        );
        assert!(
            e.contains(&format!("{flag} cannot be used with --measure-stats")),
            "{e}"
        );
    }
    std::fs::write(p.join("th.toml"), "per_layer = [0.1]\n").unwrap();
    // `sprint eval --model minilm --task bbc` plus these arguments: refused, saying this.
    for (extra, says) in [
        (&["--calib-items", "0"][..], "--calib-items 0"),
        (
            &["--thresholds", "th.toml", "--per-head"][..],
            "--per-head applies to calibration only",
        ),
        (
            &["--thresholds", "th.toml", "--calibration", "mass"][..],
            "--calibration applies to calibration only",
        ),
        (
            &["--calibration", "median"][..],
            "unknown calibration method `median`",
        ),
    ] {
        let mut args = vec!["eval", "--model", "minilm", "--task", "bbc"];
        args.extend_from_slice(extra);
        let e = refuse(p, &args);
        assert!(e.contains(says), "{extra:?}: {e}");
    }
}

#[test]
fn row13_messages_name_the_users_path_the_field_and_the_problem() {
    let d = tmp();
    let p = d.path();
    write_st(&p.join("in.safetensors"), &qkv(&[2, 8, 16]));
    // A missing config says "config".
    let e = refuse(
        p,
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
            "--config",
            "nope.toml",
        ],
    );
    assert_eq!(e.trim_end(), "error: config nope.toml: no such file");
    // A folder given as a trace.
    std::fs::create_dir(p.join("adir")).unwrap();
    let e = refuse(p, &["simulate", "--preset", "s-sprint", "--trace", "adir"]);
    assert!(e.contains("trace adir: is a folder"), "{e}");
    assert!(!e.contains("<stream>"), "{e}");
    // A damaged block names the file.
    run_ok(
        p,
        &[
            "attend",
            "--input",
            "in.safetensors",
            "--out",
            "o.safetensors",
            "--trace",
            "t.trace",
        ],
    );
    let mut b = std::fs::read(p.join("t.trace")).unwrap();
    let n = b.len();
    b[n - 20] ^= 0x55;
    std::fs::write(p.join("bad.trace"), &b).unwrap();
    let e = refuse(
        p,
        &["simulate", "--preset", "s-sprint", "--trace", "bad.trace"],
    );
    assert!(e.contains("trace bad.trace: "), "{e}");
    // An unknown preset section is named as such.
    std::fs::write(
        p.join("p.toml"),
        "inherits = \"s-sprint\"\n[memory.channelz]\nvalue = 4\n",
    )
    .unwrap();
    let e = refuse(
        p,
        &["simulate", "--preset", "p.toml", "--workload", "ViT-B"],
    );
    assert!(
        e.contains("memory.channelz") && !e.contains("[memory"),
        "{e}"
    );
    // Negative numbers are values, not flags.
    let out = sprint()
        .args([
            "simulate",
            "--preset",
            "s-sprint",
            "--workload",
            "ViT-B",
            "--padding",
            "-0.5",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("padding fraction must be in [0, 1), got -0.5"),
        "{err}"
    );
    let out = sprint()
        .args(["simulate", "--preset", "s-sprint", "--seq-len", "-0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("unexpected argument"), "{err}");
    // With RUST_BACKTRACE=1, a broken GGUF model is still one short line.
    // (A wrong magic makes candle capture a backtrace into its error.)
    let garbage: Vec<u8> = values(1000, 7)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(p.join("m.gguf"), garbage).unwrap();
    let out = sprint()
        .current_dir(p)
        .env("RUST_BACKTRACE", "1")
        .args(["eval", "--model", "m.gguf", "--task", "ppl-austen"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.len() < 400 && err.contains("m.gguf"), "{err}");
    assert!(
        err.contains("unknown magic") && !err.contains("candle_core::"),
        "{err}"
    );
    // A truncated GGUF says so.
    std::fs::write(p.join("t.gguf"), b"GGUF\x03\x00\x00\x00").unwrap();
    let e = refuse(p, &["eval", "--model", "t.gguf", "--task", "ppl-austen"]);
    assert!(e.contains("t.gguf") && e.contains("truncated"), "{e}");
    // eval checks its output paths before loading the model.
    let e = refuse(
        p,
        &[
            "eval",
            "--model",
            "m.gguf",
            "--task",
            "ppl-austen",
            "--dump-windows",
            "nodir/w.json",
        ],
    );
    assert!(
        e.contains("--dump-windows nodir/w.json: folder nodir does not exist"),
        "{e}"
    );
}

#[test]
fn row14_degenerate_inputs_get_a_consistent_rule() {
    let d = tmp();
    let p = d.path();
    let mut t = qkv(&[2, 8, 16]);
    t.push(("valid", Dtype::F32, vec![8], f32_bytes(&[0.0; 8])));
    write_st(&p.join("nomask.safetensors"), &t);
    let e = refuse(
        p,
        &[
            "attend",
            "--input",
            "nomask.safetensors",
            "--out",
            "o.safetensors",
        ],
    );
    assert!(e.contains("marks no token as real"), "{e}");
    write_st(&p.join("in.safetensors"), &qkv(&[2, 8, 16]));
    for bytes in ["0", "1", "15"] {
        std::fs::write(p.join("buf.toml"), format!("[buffer]\nk_bytes = {bytes}\n")).unwrap();
        let e = refuse(
            p,
            &[
                "attend",
                "--input",
                "in.safetensors",
                "--out",
                "o.safetensors",
                "--config",
                "buf.toml",
            ],
        );
        assert!(
            e.contains("buffer.k_bytes") && e.contains("smaller than one"),
            "{e}"
        );
    }
    // A trace with 0 queries: no "inf" ratio.
    big_trace(&p.join("empty.trace"), 1, 0);
    let out = sprint()
        .current_dir(p)
        .args([
            "simulate",
            "--preset",
            "s-sprint",
            "--preset",
            "s-baseline",
            "--trace",
            "empty.trace",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("inf"), "{text}");
}

/// Row 10: SIGINT to `eval --trace` with several variants, late in the run, leaves no
/// per-variant trace (they are staged and renamed together after the last variant). Needs
/// MiniLM and BBC News in the asset cache; skipped (with a note) when they are absent.
#[test]
fn row10_interrupted_eval_leaves_no_per_variant_trace() {
    use sprint_assets::{Asset, Cache};
    let cache = Cache::from_env();
    if !cache.is_present(Asset::MiniLm) || !cache.is_present(Asset::Bbc) {
        eprintln!("skipped: MiniLM and BBC News are not in the asset cache");
        return;
    }
    let d = tmp();
    let p = d.path();
    let mut child = spawn_traced_bbc_eval(p, "dense,sprint,dense-copy", &[]);
    let _ = child.wait();
    // The variant list above is invalid on purpose: nothing ran, nothing was written.
    assert!(files_in(p).is_empty(), "{:?}", files_in(p));
    let mut child = spawn_traced_bbc_eval(p, "dense,runtime-pruning,sprint", &["--keep", "0.3"]);
    // Late in the run: once the first two variants' traces are staged.
    let t0 = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let staged = files_in(p)
            .iter()
            .filter(|f| f.file_name().unwrap().to_string_lossy().contains(".tmp-"))
            .count();
        if staged >= 2 || t0.elapsed().as_secs() > 300 {
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            let code = child.wait().unwrap().code();
            assert_eq!(code, Some(130));
            assert!(files_in(p).is_empty(), "left: {:?}", files_in(p));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Finished before the signal: then all three traces exist.
    for v in ["dense", "runtime-pruning", "sprint"] {
        assert!(p.join(format!("t.{v}.trace")).exists());
    }
}

/// Issue #29 row 17: negative numbers are values on every command (one policy), so an
/// out-of-range value is refused by its own check, naming the flag, instead of clap's
/// "unexpected argument '-0'".
#[test]
fn row29_17_negative_numbers_are_values_everywhere() {
    let d = tmp();
    let grid = d.path().join("g.toml");
    std::fs::write(
        &grid,
        "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\n",
    )
    .unwrap();
    let out = d.path().join("o");
    let o = |ext: &str| out.with_extension(ext).to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "thresholds",
                "learn",
                "--model",
                "minilm",
                "--task",
                "bbc",
                "--keep",
                "-0.5",
                "-o",
                &o("toml"),
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--keep",
        ),
        (
            vec![
                "thresholds",
                "calibrate",
                "--model",
                "smollm2",
                "--task",
                "ppl-austen",
                "--target",
                "-0.1",
                "-o",
                &o("toml"),
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--target",
        ),
        (
            vec![
                "sweep-sparsity",
                "--model",
                "minilm",
                "--task",
                "bbc",
                "--targets",
                "-0.1,0.2",
                "--csv",
                &o("csv"),
                "--svg",
                &o("svg"),
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "--targets",
        ),
        (
            vec![
                "sweep",
                "--grid",
                grid.to_str().unwrap(),
                "--out",
                &o("csv"),
                "--shard",
                "-1/2",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            "shard",
        ),
    ];
    for (args, flag) in cases {
        let r = sprint().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the grid file: {left:?}");
}

/// Issue #29 row 2: the files of the asset cache are inputs of every command that reads a
/// model or data set, so an output named inside it is refused before any work, and the
/// cached files stay as they were. A private `SPRINT_CACHE` with a stand-in model file.
#[test]
fn row29_02_outputs_never_land_in_the_asset_cache() {
    let d = tmp();
    let cache = d.path().join("cache");
    std::fs::create_dir_all(cache.join("minilm")).unwrap();
    let cached = cache.join("minilm/model.safetensors");
    std::fs::write(&cached, b"stand-in").unwrap();
    let c = cached.to_str().unwrap();
    let json = cache.join("minilm/config.json");
    let j = json.to_str().unwrap();
    let cases: [&[&str]; 5] = [
        &[
            "eval",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--json-out",
            j,
        ],
        &[
            "eval",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--save-thresholds",
            c,
        ],
        &[
            "thresholds",
            "learn",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "-o",
            c,
        ],
        &[
            "thresholds",
            "calibrate",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--target",
            "0.25",
            "-o",
            c,
        ],
        &[
            "sweep-sparsity",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--csv",
            c,
            "--svg",
            j,
        ],
    ];
    for args in cases {
        let r = sprint()
            .env("SPRINT_CACHE", &cache)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains("asset cache"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&cached).unwrap(), b"stand-in");
    assert!(!json.exists());
}

/// Issue #29 row 14: a decode shape whose work is absurd (batch 1e9, layers 1e8, heads 4e9;
/// batch 1e5) is refused at once with the limit named, before anything is allocated.
#[test]
fn row29_14_decode_shapes_are_bounded_before_allocation() {
    let d = tmp();
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/decode/smollm2.toml"),
    )
    .unwrap();
    let cases: [&[(&str, &str)]; 2] = [
        &[
            ("batch = { value = 1,", "batch = { value = 1000000000,"),
            ("layers = { value = 30,", "layers = { value = 100000000,"),
            ("heads = { value = 9,", "heads = { value = 3999999999,"),
            ("kv_heads = { value = 3,", "kv_heads = { value = 1,"),
        ],
        &[("batch = { value = 1,", "batch = { value = 100000,")],
    ];
    for (k, edits) in cases.iter().enumerate() {
        let mut text = base.clone();
        for (from, to) in edits.iter() {
            assert!(text.contains(from), "{from}");
            text = text.replacen(from, to, 1);
        }
        let f = d.path().join(format!("decode{k}.toml"));
        std::fs::write(&f, text).unwrap();
        let r = sprint()
            .args(["simulate", "--decode", f.to_str().unwrap()])
            .args(["--preset", "s-baseline", "--preset", "s-sprint"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "case {k} succeeded");
        assert!(
            err.contains("limit") && err.contains("shape"),
            "case {k}: {err}"
        );
        assert!(!err.contains("panicked"), "case {k}: {err}");
    }
}

/// Issue #29 row 8: a setting that the command would ignore is refused, naming it: eval
/// keys in a simulate grid, `--mass-targets` without the mass method, `--per-layer` with
/// `--init-per-head`, `--eval-seq-len 0`, a NaN in the `valid` mask.
#[test]
fn row29_08_ignored_settings_are_refused() {
    let d = tmp();
    let out = d.path().join("o.csv");
    let o = out.to_str().unwrap();
    let grid = d.path().join("g.toml");
    std::fs::write(
        &grid,
        "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\nmodels = [\"minilm\"]\nkeep = 0.3\n",
    )
    .unwrap();
    let svg = d.path().join("o.svg");
    let th = d.path().join("t.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sweep", "--grid", grid.to_str().unwrap(), "--out", o],
            "models",
        ),
        (
            vec![
                "sweep-sparsity",
                "--model",
                "minilm",
                "--task",
                "bbc",
                "--methods",
                "quantile",
                "--mass-targets",
                "0.9",
                "--csv",
                o,
                "--svg",
                svg.to_str().unwrap(),
            ],
            "--mass-targets",
        ),
        (
            vec![
                "thresholds",
                "learn",
                "--model",
                "minilm",
                "--task",
                "bbc",
                "--per-layer",
                "--init-per-head",
                "-o",
                th.to_str().unwrap(),
            ],
            "--init-per-head",
        ),
        (
            vec![
                "thresholds",
                "learn",
                "--model",
                "smollm2",
                "--task",
                "ppl-austen",
                "--eval-seq-len",
                "0",
                "-o",
                th.to_str().unwrap(),
            ],
            "--eval-seq-len",
        ),
    ];
    let empty = vec![
        "sweep-sparsity",
        "--model",
        "minilm",
        "--task",
        "bbc",
        "--targets",
        "",
        "--csv",
        o,
        "--svg",
        svg.to_str().unwrap(),
    ];
    for (args, needle) in cases.into_iter().chain([(empty, "--targets")]) {
        let r = sprint().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A NaN in `valid`.
    let input = d.path().join("qkv.safetensors");
    let mut t = qkv(&[1, 8, 4]);
    let mut mask = vec![1.0f32; 8];
    mask[3] = f32::NAN;
    t.push(("valid", Dtype::F32, vec![8], f32_bytes(&mask)));
    write_st(&input, &t);
    let r = sprint()
        .args(["attend", "--input", input.to_str().unwrap()])
        .args(["--out", d.path().join("a.safetensors").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "a NaN mask was accepted");
    assert!(err.contains("valid") && err.contains("NaN"), "{err}");
    assert!(!out.exists() && !svg.exists() && !th.exists());
}

/// Issue #29 row 9: `sprint eval` writes all its outputs or none. A reference run on another
/// split passes the checks made before the model runs and fails the one made after: the
/// traces and the thresholds file must not be left. Real assets (MiniLM, BBC); skipped with
/// a visible message when they are absent.
#[test]
fn row29_09_a_failed_eval_leaves_no_output() {
    if !minilm_bbc_present() {
        return;
    }
    let d = tmp();
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
    let common = [
        "eval",
        "--model",
        "minilm",
        "--task",
        "bbc",
        "--seq-len",
        "64",
        "--keep",
        "0.25",
    ];
    let r = sprint()
        .args(common)
        .args([
            "--limit",
            "20",
            "--variants",
            "dense",
            "--json-out",
            &p("ref.json"),
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = sprint()
        .args(common)
        .args(["--limit", "30", "--variants", "dense,sprint"])
        .args(["--trace", &p("t.trace"), "--save-thresholds", &p("th.toml")])
        .args(["--reference", &p("ref.json")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success(),
        "a reference on another split was accepted"
    );
    assert!(err.contains("ref.json"), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["ref.json"], "outputs left by a failed eval");
}

/// Issue #29 rows 12 and 15: an output that is a hard link of a file inside a folder input
/// (a model given as a folder, the asset cache) is refused, and absurd evaluation windows are
/// refused before any model or text is loaded.
#[test]
fn row29_12_15_hard_links_into_inputs_and_absurd_windows() {
    let d = tmp();
    let model = d.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    let weights = model.join("model.safetensors");
    std::fs::write(&weights, b"weights").unwrap();
    let link = d.path().join("w.safetensors");
    std::fs::hard_link(&weights, &link).unwrap();
    let th = d.path().join("t.toml");
    let r = sprint()
        .args(["thresholds", "learn", "--model", model.to_str().unwrap()])
        .args(["--task", "bbc", "--finetune", "norms-biases"])
        .args([
            "-o",
            th.to_str().unwrap(),
            "--weights-out",
            link.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success(),
        "a hard link of the model's weights was accepted"
    );
    assert!(
        err.contains("--weights-out") && err.contains("--model"),
        "{err}"
    );
    assert_eq!(std::fs::read(&weights).unwrap(), b"weights");
    for cmd in [
        vec!["thresholds", "learn", "--eval-windows", "100000000"],
        vec![
            "thresholds",
            "calibrate",
            "--target",
            "0.9",
            "--eval-windows",
            "100000000",
        ],
    ] {
        let r = sprint()
            .args(&cmd)
            .args(["--model", "smollm2", "--task", "ppl-austen"])
            .args(["-o", th.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{cmd:?} succeeded");
        assert!(
            err.contains("--eval-windows") && err.contains("limit"),
            "{cmd:?}: {err}"
        );
    }
    assert!(!th.exists());
}

/// Issue #29 row 11: SIGINT while `sprint eval --save-thresholds` is still evaluating leaves
/// no thresholds file (it waits, staged, until the whole evaluation has passed) and no
/// temporary file. Real assets (MiniLM, BBC); skipped with a visible message without them.
#[test]
fn row29_11_interrupted_eval_leaves_no_thresholds_file() {
    if !minilm_bbc_present() {
        return;
    }
    let d = tmp();
    let code = interrupt_while_writing(
        d.path(),
        &[
            "eval",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--limit",
            "60",
            "--seq-len",
            "128",
            "--variants",
            "dense,sprint",
            "--keep",
            "0.25",
            "--calib",
            "2",
            "--save-thresholds",
            "th.toml",
        ],
        "-INT",
    );
    assert_eq!(
        code,
        Some(130),
        "the evaluation was not interrupted while staged"
    );
    assert!(
        files_in(d.path()).is_empty(),
        "left: {:?}",
        files_in(d.path())
    );
}

/// Whether MiniLM and BBC are in the asset cache; prints why a test is skipped when not.
fn minilm_bbc_present() -> bool {
    let cache = sprint_assets::Cache::from_env();
    for a in [sprint_assets::Asset::MiniLm, sprint_assets::Asset::Bbc] {
        if let Err(e) = cache.require(a) {
            eprintln!("SKIPPED (asset missing): {e}");
            return false;
        }
    }
    true
}

/// Starts `sprint eval` of MiniLM on 40 BBC documents in `dir` with `variants`, the trace
/// to `t.trace`, and `extra` arguments.
fn spawn_traced_bbc_eval(dir: &Path, variants: &str, extra: &[&str]) -> std::process::Child {
    let mut args = vec![
        "eval",
        "--model",
        "minilm",
        "--task",
        "bbc",
        "--limit",
        "40",
        "--variants",
        variants,
        "--trace",
        "t.trace",
    ];
    args.extend_from_slice(extra);
    sprint().current_dir(dir).args(args).spawn().unwrap()
}
