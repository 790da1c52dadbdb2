//! Readers of the data sets, returning plain Rust values, and seeded train/test splits.
//!
//! Every reader takes the [`Cache`] (and fails with [`AssetError::Missing`], naming the
//! fetch command, when the asset is absent); the `*_from_dir` / `*_from_file` variants read
//! a folder or file directly. Documents come in a fixed order (sorted by path), so indices
//! and seeded splits are reproducible.

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use crate::rdata::{LazyLoadDb, RValue};
use crate::{Asset, AssetError, Cache};

/// One labelled document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Where it comes from: its path relative to the asset folder, or `file:line`.
    pub id: String,
    /// The text.
    pub text: String,
    /// Index into [`LabeledCorpus::labels`].
    pub label: usize,
}

/// A labelled text collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabeledCorpus {
    /// Label names; a document's `label` indexes this list.
    pub labels: Vec<String>,
    /// The documents, in a fixed order.
    pub docs: Vec<Document>,
}

impl LabeledCorpus {
    /// Number of documents per label.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.labels.len()];
        for d in &self.docs {
            c[d.label] += 1;
        }
        c
    }

    /// The label of every document, in order.
    pub fn label_ids(&self) -> Vec<usize> {
        self.docs.iter().map(|d| d.label).collect()
    }
}

fn format_err(path: &Path, detail: impl Into<String>) -> AssetError {
    AssetError::Format {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AssetError> {
    std::fs::read(path).map_err(|e| AssetError::io("read", path, e))
}

/// Decodes text: UTF-8 when valid, else Windows-1252 (Latin-1 with the printable
/// characters Windows puts in 0x80..=0x9F, such as `—` for 0x97).
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => decode_cp1252(bytes),
    }
}

/// Decodes Windows-1252 (the five undefined bytes map to the C1 controls, like Latin-1).
pub fn decode_cp1252(bytes: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9f => HIGH[(b - 0x80) as usize],
            _ => b as char,
        })
        .collect()
}

/// Files below `dir` (recursively) whose names end with `suffix`, as sorted paths
/// relative to `dir` with `/` separators.
fn list_files(dir: &Path, suffix: &str) -> Result<Vec<String>, AssetError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let rd = std::fs::read_dir(&abs).map_err(|e| AssetError::io("read folder", &abs, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| AssetError::io("read folder", &abs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let ty = entry
                .file_type()
                .map_err(|e| AssetError::io("read folder", &abs, e))?;
            let child = rel.join(&name);
            if ty.is_dir() {
                stack.push(child);
            } else if name.ends_with(suffix) {
                out.push(
                    child
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// BBC News: 2225 articles labelled with one of 5 topics (`business`, `entertainment`,
/// `politics`, `sports`, `tech`). The text is the whole file (title line first).
pub fn bbc(cache: &Cache) -> Result<LabeledCorpus, AssetError> {
    bbc_from_dir(&cache.require(Asset::Bbc)?)
}

/// [`bbc`] from a folder laid out as `<topic>/NNN.txt`.
pub fn bbc_from_dir(dir: &Path) -> Result<LabeledCorpus, AssetError> {
    let files = list_files(dir, ".txt")?;
    let mut labels: Vec<String> = Vec::new();
    let mut docs = Vec::with_capacity(files.len());
    for rel in files {
        let Some((topic, _)) = rel.split_once('/') else {
            continue; // top-level files are not articles
        };
        let label = match labels.iter().position(|l| l == topic) {
            Some(i) => i,
            None => {
                labels.push(topic.to_string());
                labels.len() - 1
            }
        };
        let text = decode_text(&read(&dir.join(&rel))?);
        docs.push(Document {
            id: rel,
            text,
            label,
        });
    }
    if docs.is_empty() {
        return Err(format_err(dir, "no `<topic>/*.txt` articles"));
    }
    Ok(LabeledCorpus { labels, docs })
}

/// The body of a raw RFC 822 message: everything after the first blank line (an empty
/// line or one holding only `\r`), decoded lossily as UTF-8. Empty when there is no blank
/// line.
pub fn email_body(raw: &[u8]) -> String {
    let mut start = 0;
    while start < raw.len() {
        let end = raw[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| start + p);
        let line = &raw[start..end];
        if line.is_empty() || line == b"\r" {
            let body = raw.get(end + 1..).unwrap_or(&[]);
            return String::from_utf8_lossy(body).into_owned();
        }
        start = end + 1;
    }
    String::new()
}

/// SpamAssassin public corpus: message bodies labelled `ham` (0) or `spam` (1); 4150 ham
/// (`easy-ham-1`, `easy-ham-2`, `hard-ham-1`) and 1896 spam (`spam-1`, `spam-2`).
pub fn spam_assassin(cache: &Cache) -> Result<LabeledCorpus, AssetError> {
    spam_assassin_from_dir(&cache.require(Asset::SpamAssassin)?)
}

/// [`spam_assassin`] from a folder laid out as `<group>/*.txt`, where a group whose name
/// starts with `spam` holds spam and one containing `ham` holds ham.
pub fn spam_assassin_from_dir(dir: &Path) -> Result<LabeledCorpus, AssetError> {
    let mut docs = Vec::new();
    for rel in list_files(dir, ".txt")? {
        let Some((group, _)) = rel.split_once('/') else {
            continue;
        };
        let label = if group.starts_with("spam") {
            1
        } else if group.contains("ham") {
            0
        } else {
            return Err(format_err(
                &dir.join(group),
                "group is neither ham nor spam",
            ));
        };
        let text = email_body(&read(&dir.join(&rel))?);
        docs.push(Document {
            id: rel,
            text,
            label,
        });
    }
    if docs.is_empty() {
        return Err(format_err(dir, "no `<group>/*.txt` messages"));
    }
    Ok(LabeledCorpus {
        labels: vec!["ham".into(), "spam".into()],
        docs,
    })
}

/// Moby Dick, the whole plain text.
pub fn moby_dick(cache: &Cache) -> Result<String, AssetError> {
    let path = cache.require_file(Asset::MobyDick, "data.txt")?;
    Ok(decode_text(&read(&path)?))
}

/// A State of the Union address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speech {
    /// Year delivered.
    pub year: u16,
    /// President, e.g. `George Washington`.
    pub president: String,
    /// Party, e.g. `Federalist`, `Democratic`; `none` for Washington.
    pub party: String,
    /// The text.
    pub text: String,
}

/// Party name of a SOTU file-name code.
fn party_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "n" => "none",
        "f" => "Federalist",
        "dr" => "Democratic-Republican",
        "d" => "Democratic",
        "r" => "Republican",
        "w" => "Whig",
        "wd" => "Whig & Democratic",
        "nu" => "National Union",
        _ => return None,
    })
}

/// Parses `YYYY_first_last_party.txt` into (year, president, party): words of the name
/// capitalised (`1801_thomas_jefferson_dr.txt` -> 1801, `Thomas Jefferson`,
/// `Democratic-Republican`).
pub fn parse_sotu_file_name(name: &str) -> Option<(u16, String, String)> {
    let stem = name.strip_suffix(".txt")?;
    let parts: Vec<&str> = stem.split('_').collect();
    if parts.len() < 3 || parts[0].len() != 4 {
        return None;
    }
    let year: u16 = parts[0].parse().ok()?;
    let party = party_name(parts[parts.len() - 1])?;
    let president = parts[1..parts.len() - 1]
        .iter()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if president.is_empty() {
        return None;
    }
    Some((year, president, party.to_string()))
}

/// State of the Union addresses 1790-2021 (233), ordered by file name (year first).
pub fn sotu(cache: &Cache) -> Result<Vec<Speech>, AssetError> {
    sotu_from_dir(&cache.require(Asset::Sotu)?)
}

/// [`sotu`] from a folder of `YYYY_president_name_party.txt` files (other files are
/// ignored; a `YYYY_*.txt` name that does not parse is an error).
pub fn sotu_from_dir(dir: &Path) -> Result<Vec<Speech>, AssetError> {
    let mut out = Vec::new();
    for rel in list_files(dir, ".txt")? {
        if rel.contains('/') || !rel.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let (year, president, party) = parse_sotu_file_name(&rel).ok_or_else(|| {
            format_err(
                &dir.join(&rel),
                "file name is not YYYY_president_name_party.txt",
            )
        })?;
        let text = decode_text(&read(&dir.join(&rel))?);
        out.push(Speech {
            year,
            president,
            party,
            text,
        });
    }
    if out.is_empty() {
        return Err(format_err(dir, "no speeches"));
    }
    Ok(out)
}

/// A novel of Jane Austen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Novel {
    /// Variable name in the R package (`prideprejudice`, ...).
    pub id: &'static str,
    /// Title as the R package's `austen_books()` gives it (`Pride & Prejudice`, ...).
    pub title: &'static str,
    /// The text: the package's lines joined with `\n`.
    pub text: String,
}

/// The six novels, in publication order as `austen_books()` lists them.
pub const AUSTEN_NOVELS: [(&str, &str); 6] = [
    ("sensesensibility", "Sense & Sensibility"),
    ("prideprejudice", "Pride & Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
];

/// Jane Austen's six novels, read from the R lazy-load database of `janeaustenr`.
pub fn austen(cache: &Cache) -> Result<Vec<Novel>, AssetError> {
    let dir = cache.require(Asset::Austen)?;
    for f in ["Rdata.rdx", "Rdata.rdb"] {
        cache.require_file(Asset::Austen, f)?;
    }
    austen_from_dir(&dir)
}

/// [`austen`] from a folder holding `Rdata.rdx` and `Rdata.rdb`.
pub fn austen_from_dir(dir: &Path) -> Result<Vec<Novel>, AssetError> {
    let db = LazyLoadDb::open(&dir.join("Rdata.rdx"), &dir.join("Rdata.rdb"))?;
    let mut out = Vec::with_capacity(AUSTEN_NOVELS.len());
    for (id, title) in AUSTEN_NOVELS {
        let v = db.get(id)?;
        let RValue::Character(lines) = v.value else {
            return Err(format_err(
                &dir.join("Rdata.rdb"),
                format!("`{id}` is not a character vector"),
            ));
        };
        let mut text = String::with_capacity(lines.iter().flatten().map(|l| l.len() + 1).sum());
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(l.as_deref().unwrap_or(""));
        }
        out.push(Novel { id, title, text });
    }
    Ok(out)
}

/// Pang & Lee sentence polarity sample (200 sentences: 100 negative, 100 positive), from
/// gensim's test data. Labels: `negative` (0), `positive` (1).
pub fn pang_lee(cache: &Cache) -> Result<LabeledCorpus, AssetError> {
    pang_lee_from_file(&cache.require_file(Asset::GensimData, "pang_lee_polarity.cor")?)
}

/// [`pang_lee`] from a file in fastText format: one sentence per line, starting with
/// `__label__neg ` or `__label__pos `; Windows-1252 text (Latin-1 with `—` as 0x97).
/// Surrounding spaces are trimmed; blank lines are skipped.
pub fn pang_lee_from_file(path: &Path) -> Result<LabeledCorpus, AssetError> {
    let text = decode_text(&read(path)?);
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (label, rest) = if let Some(r) = line.strip_prefix("__label__neg") {
            (0, r)
        } else if let Some(r) = line.strip_prefix("__label__pos") {
            (1, r)
        } else {
            return Err(format_err(
                path,
                format!("line {}: expected `__label__neg` or `__label__pos`", i + 1),
            ));
        };
        docs.push(Document {
            id: format!("pang_lee_polarity.cor:{}", i + 1),
            text: rest.trim().to_string(),
            label,
        });
    }
    Ok(LabeledCorpus {
        labels: vec!["negative".into(), "positive".into()],
        docs,
    })
}

/// The Lee document-similarity data: 50 news documents and the mean human similarity
/// rating of every pair (a symmetric 50 x 50 matrix, 1 on the diagonal).
#[derive(Clone, Debug, PartialEq)]
pub struct LeeCorpus {
    /// The documents.
    pub docs: Vec<String>,
    /// `similarity[i][j]`, in [0, 1].
    pub similarity: Vec<Vec<f32>>,
}

/// Reads the Lee data from gensim's test data (`lee.cor`, `similarities0-1.txt`).
pub fn lee(cache: &Cache) -> Result<LeeCorpus, AssetError> {
    let docs_path = cache.require_file(Asset::GensimData, "lee.cor")?;
    let sim_path = cache.require_file(Asset::GensimData, "similarities0-1.txt")?;
    let docs: Vec<String> = decode_text(&read(&docs_path)?)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    let sim_text = decode_text(&read(&sim_path)?);
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for (i, line) in sim_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        let row = line
            .split_whitespace()
            .map(|x| x.parse::<f32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format_err(&sim_path, format!("row {}: {e}", i + 1)))?;
        rows.push(row);
    }
    let n = rows.len();
    if n != docs.len() || rows.iter().any(|r| r.len() != n) {
        return Err(format_err(
            &sim_path,
            format!("expected a {0} x {0} matrix for {0} documents", docs.len()),
        ));
    }
    // The file holds the upper triangle (zeros below the diagonal): mirror it.
    let mut similarity = rows.clone();
    for i in 0..n {
        for j in 0..i {
            similarity[i][j] = rows[j][i];
        }
    }
    Ok(LeeCorpus { docs, similarity })
}

/// A train/test partition of `0..n`, each list ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training indices.
    pub train: Vec<usize>,
    /// Test indices.
    pub test: Vec<usize>,
}

/// Uniform integer in `0..bound` (`bound > 0`) by rejection sampling on 64-bit words:
/// the same on every platform.
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let rem = (u64::MAX % bound + 1) % bound; // 2^64 mod bound
    loop {
        let x = rng.next_u64();
        if x <= u64::MAX - rem {
            return x % bound;
        }
    }
}

/// A seeded permutation of `0..n` (Fisher-Yates with ChaCha8 seeded by `seed`).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = uniform_below(&mut rng, i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

fn check_fraction(test_fraction: f64) -> Result<(), AssetError> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(AssetError::InvalidArgument(format!(
            "test fraction must be in [0, 1], got {test_fraction}"
        )));
    }
    Ok(())
}

/// Splits `0..n` at random into test (`round(n * test_fraction)` indices) and train (the
/// rest), reproducibly: the same `(n, test_fraction, seed)` gives the same split on every
/// platform (ChaCha8 stream, 64-bit rejection sampling, Fisher-Yates).
pub fn split(n: usize, test_fraction: f64, seed: u64) -> Result<Split, AssetError> {
    check_fraction(test_fraction)?;
    let n_test = ((n as f64) * test_fraction).round() as usize;
    let p = permutation(n, seed);
    let mut test = p[..n_test.min(n)].to_vec();
    let mut train = p[n_test.min(n)..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    Ok(Split { train, test })
}

/// Like [`split`], but per label: each label's documents are split with the same
/// fraction (label `l` uses seed `seed + l`), so both parts keep the label proportions.
pub fn stratified_split(
    labels: &[usize],
    test_fraction: f64,
    seed: u64,
) -> Result<Split, AssetError> {
    check_fraction(test_fraction)?;
    let n_labels = labels.iter().max().map_or(0, |m| m + 1);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for l in 0..n_labels {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == l).collect();
        let s = split(idx.len(), test_fraction, seed.wrapping_add(l as u64))?;
        train.extend(s.train.iter().map(|&i| idx[i]));
        test.extend(s.test.iter().map(|&i| idx[i]));
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok(Split { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let s = split(100, 0.2, 7).unwrap();
        assert_eq!(s.test.len(), 20);
        assert_eq!(s.train.len(), 80);
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(s, split(100, 0.2, 7).unwrap());
        assert_ne!(s, split(100, 0.2, 8).unwrap());
        // Edge cases.
        assert_eq!(split(0, 0.5, 1).unwrap().test.len(), 0);
        assert_eq!(split(10, 0.0, 1).unwrap().test.len(), 0);
        assert_eq!(split(10, 1.0, 1).unwrap().train.len(), 0);
        assert!(split(10, 1.5, 1).is_err());
        assert!(split(10, f64::NAN, 1).is_err());
    }

    /// Golden values: the split must never change across platforms or releases.
    #[test]
    fn split_golden() {
        let s = split(10, 0.3, 42).unwrap();
        assert_eq!(s.test, GOLDEN_TEST_10_03_42);
        assert_eq!(permutation(8, 0), GOLDEN_PERM_8_0);
    }

    const GOLDEN_TEST_10_03_42: [usize; 3] = [1, 5, 9];
    const GOLDEN_PERM_8_0: [usize; 8] = [3, 6, 0, 5, 1, 7, 2, 4];

    #[test]
    fn stratified_split_keeps_proportions() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let s = stratified_split(&labels, 0.2, 3).unwrap();
        assert_eq!(s.test.len(), 20);
        assert_eq!(s.test.iter().filter(|&&i| labels[i] == 1).count(), 5);
        assert_eq!(s, stratified_split(&labels, 0.2, 3).unwrap());
    }

    #[test]
    fn email_body_after_first_blank_line() {
        assert_eq!(
            email_body(b"From: a\nSubject: b\n\nHello\n\nWorld\n"),
            "Hello\n\nWorld\n"
        );
        assert_eq!(email_body(b"From: a\r\nSubject: b\r\n\r\nHi\r\n"), "Hi\r\n");
        assert_eq!(email_body(b"From: a\nSubject: b\n"), "");
        assert_eq!(email_body(b"\nbody"), "body");
        assert_eq!(email_body(b"A: b\n\n\xff\xfeok"), "\u{fffd}\u{fffd}ok");
        assert_eq!(email_body(b""), "");
    }

    #[test]
    fn cp1252_fallback() {
        assert_eq!(decode_text("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(decode_text(b"a \x97 b \xa315"), "a \u{2014} b \u{a3}15");
    }

    #[test]
    fn sotu_file_names() {
        assert_eq!(
            parse_sotu_file_name("1801_thomas_jefferson_dr.txt"),
            Some((
                1801,
                "Thomas Jefferson".into(),
                "Democratic-Republican".into()
            ))
        );
        assert_eq!(
            parse_sotu_file_name("2021_joseph_r_biden_d.txt"),
            Some((2021, "Joseph R Biden".into(), "Democratic".into()))
        );
        assert_eq!(parse_sotu_file_name("1790_george_washington_x.txt"), None);
        assert_eq!(parse_sotu_file_name("17_a_n.txt"), None);
        assert_eq!(parse_sotu_file_name("1790__n.txt"), None);
        assert_eq!(parse_sotu_file_name("readme.txt"), None);
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn readers_on_small_folders() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        // BBC-like.
        write(&d.join("bbc/tech/001.txt"), b"Title\n\nBody");
        write(&d.join("bbc/sports/001.txt"), b"\xa35m fee");
        write(&d.join("bbc/tech/002.txt"), b"Two");
        let c = bbc_from_dir(&d.join("bbc")).unwrap();
        assert_eq!(c.labels, vec!["sports", "tech"]);
        assert_eq!(c.counts(), vec![1, 2]);
        assert_eq!(c.docs[0].text, "\u{a3}5m fee");
        assert_eq!(c.docs[1].id, "tech/001.txt");
        // Spam-like.
        write(&d.join("sa/easy-ham-1/1.txt"), b"H: v\n\nham body");
        write(&d.join("sa/spam-2/2.txt"), b"H: v\r\n\r\nspam body");
        let c = spam_assassin_from_dir(&d.join("sa")).unwrap();
        assert_eq!(c.counts(), vec![1, 1]);
        assert_eq!(c.docs[0].text, "ham body");
        assert_eq!(c.docs[1].text, "spam body");
        write(&d.join("sa/other/3.txt"), b"x");
        assert!(spam_assassin_from_dir(&d.join("sa")).is_err());
        // SOTU-like.
        write(
            &d.join("sotu/1790_george_washington_n.txt"),
            b"Fellow-Citizens",
        );
        write(&d.join("sotu/LICENSE"), b"x");
        let s = sotu_from_dir(&d.join("sotu")).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].president, "George Washington");
        assert_eq!(s[0].party, "none");
        write(&d.join("sotu/1791_bad.txt"), b"x");
        assert!(sotu_from_dir(&d.join("sotu")).is_err());
        // Pang & Lee format.
        write(
            &d.join("pl.cor"),
            b"__label__neg bad \x97 film . \n__label__pos  . . . fine\n\n",
        );
        let c = pang_lee_from_file(&d.join("pl.cor")).unwrap();
        assert_eq!(c.counts(), vec![1, 1]);
        assert_eq!(c.docs[0].text, "bad \u{2014} film .");
        assert_eq!(c.docs[1].text, ". . . fine");
        write(&d.join("bad.cor"), b"no label here\n");
        assert!(pang_lee_from_file(&d.join("bad.cor")).is_err());
        // Empty folders are errors, not empty data sets.
        std::fs::create_dir_all(d.join("empty")).unwrap();
        assert!(bbc_from_dir(&d.join("empty")).is_err());
    }

    #[test]
    fn missing_asset_names_the_fetch_command() {
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::new(t.path());
        let e = bbc(&cache).unwrap_err().to_string();
        assert!(e.contains("sprint assets fetch bbc"), "{e}");
        let e = austen(&cache).unwrap_err().to_string();
        assert!(e.contains("sprint assets fetch austen"), "{e}");
    }
}
