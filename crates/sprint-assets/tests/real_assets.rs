//! Checks on the real assets in the cache (`$SPRINT_CACHE`, else `~/.cache/sprint`).
//! Each test skips, saying so on stderr, when its asset has not been fetched;
//! `.ci/run` fetches them all, so CI runs these for real.

use sprint_assets::data::{self, AUSTEN_NOVELS};
use sprint_assets::{Asset, Cache, State, status};

/// Says on stderr that a test skips. Written to the stream directly (not with `eprintln!`,
/// which the test harness captures and hides for passing tests) so it is always seen.
fn skip(asset: Asset) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipping: asset {0} not fetched; run `sprint assets fetch {0}`",
        asset.id()
    );
}

/// The cache, or `None` (with a visible message) when `asset` is not fetched.
fn cache_with(asset: Asset) -> Option<Cache> {
    let cache = Cache::from_env();
    if cache.is_present(asset) {
        Some(cache)
    } else {
        skip(asset);
        None
    }
}

#[test]
fn bbc_has_2225_articles_in_5_topics() {
    let Some(cache) = cache_with(Asset::Bbc) else {
        return;
    };
    let c = data::bbc(&cache).unwrap();
    assert_eq!(c.docs.len(), 2225);
    assert_eq!(
        c.labels,
        ["business", "entertainment", "politics", "sports", "tech"]
    );
    assert_eq!(c.counts(), [510, 386, 417, 511, 401]);
    assert!(c.docs.iter().all(|d| d.text.len() > 100));
    // The one Latin-1 file decodes its pound sign.
    let d = c.docs.iter().find(|d| d.id == "sports/199.txt").unwrap();
    assert!(d.text.contains("\u{a3}15.8m"), "{}", &d.text[..300]);
    // A stratified split keeps every topic on both sides.
    let s = data::stratified_split(&c.label_ids(), 0.2, 1).unwrap();
    assert!((443..=447).contains(&s.test.len()), "{}", s.test.len());
    let test_labels: std::collections::BTreeSet<usize> =
        s.test.iter().map(|&i| c.docs[i].label).collect();
    assert_eq!(test_labels.len(), 5);
}

#[test]
fn spamassassin_has_4150_ham_and_1896_spam() {
    let Some(cache) = cache_with(Asset::SpamAssassin) else {
        return;
    };
    let c = data::spam_assassin(&cache).unwrap();
    assert_eq!(c.labels, ["ham", "spam"]);
    assert_eq!(c.counts(), [4150, 1896]);
    // Bodies, not headers (one spam is a forwarded message whose body is a header block).
    let with_headers = c
        .docs
        .iter()
        .filter(|d| d.text.starts_with("Return-Path:") || d.text.starts_with("Received:"))
        .count();
    assert!(
        with_headers <= 1,
        "{with_headers} bodies start with headers"
    );
    let empty = c.docs.iter().filter(|d| d.text.trim().is_empty()).count();
    assert!(empty < 10, "{empty} empty bodies");
}

#[test]
fn moby_dick_is_the_whole_book() {
    let Some(cache) = cache_with(Asset::MobyDick) else {
        return;
    };
    let t = data::moby_dick(&cache).unwrap();
    assert!(t.len() > 1_100_000, "{}", t.len());
    assert!(t.contains("Call me Ishmael."));
    let words = t.split_whitespace().count();
    assert!((200_000..230_000).contains(&words), "{words} words");
}

#[test]
fn sotu_has_233_speeches_with_labels() {
    let Some(cache) = cache_with(Asset::Sotu) else {
        return;
    };
    let s = data::sotu(&cache).unwrap();
    assert_eq!(s.len(), 233);
    assert_eq!(
        (s[0].year, s[0].president.as_str(), s[0].party.as_str()),
        (1790, "George Washington", "none")
    );
    let last = s.last().unwrap();
    assert_eq!(
        (last.year, last.president.as_str(), last.party.as_str()),
        (2021, "Joseph R Biden", "Democratic")
    );
    assert!(s.windows(2).all(|w| w[0].year <= w[1].year));
    assert!(s.iter().all(|x| x.text.len() > 1000));
    let republican = s.iter().filter(|x| x.party == "Republican").count();
    let democratic = s.iter().filter(|x| x.party == "Democratic").count();
    assert_eq!((republican, democratic), (92, 90));
}

#[test]
fn austen_has_six_novels() {
    let Some(cache) = cache_with(Asset::Austen) else {
        return;
    };
    let novels = data::austen(&cache).unwrap();
    assert_eq!(novels.len(), 6);
    let titles: Vec<&str> = novels.iter().map(|n| n.title).collect();
    let expected: Vec<&str> = AUSTEN_NOVELS.iter().map(|(_, t)| *t).collect();
    assert_eq!(titles, expected);
    assert!(novels[0].text.starts_with("SENSE AND SENSIBILITY"));
    assert!(
        novels[1]
            .text
            .contains("It is a truth universally acknowledged")
    );
    assert!(novels[3].text.starts_with("EMMA"));
    let words: usize = novels
        .iter()
        .map(|n| n.text.split_whitespace().count())
        .sum();
    // ASSETS.md: 717k words.
    assert!((700_000..740_000).contains(&words), "{words} words");
}

#[test]
fn pang_lee_has_200_sentences() {
    let Some(cache) = cache_with(Asset::GensimData) else {
        return;
    };
    let c = data::pang_lee(&cache).unwrap();
    assert_eq!(c.docs.len(), 200);
    assert_eq!(c.counts(), [100, 100]);
    assert_eq!(c.docs[0].text, "simplistic , silly and tedious .");
    // Windows-1252 em dash decoded.
    assert!(c.docs.iter().any(|d| d.text.contains('\u{2014}')));
    let lee = data::lee(&cache).unwrap();
    assert_eq!(lee.docs.len(), 50);
    for i in 0..50 {
        assert_eq!(lee.similarity[i][i], 1.0);
        for j in 0..50 {
            assert_eq!(lee.similarity[i][j], lee.similarity[j][i]);
        }
    }
}

#[test]
fn model_files_are_in_place() {
    if let Some(cache) = cache_with(Asset::MiniLm) {
        for f in [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "vocab.txt",
            "1_Pooling/config.json",
            "sentence_bert_config.json",
        ] {
            cache.require_file(Asset::MiniLm, f).unwrap();
        }
    }
    if let Some(cache) = cache_with(Asset::SmolLm2) {
        let p = cache
            .require_file(Asset::SmolLm2, "SmolLM2-135M-Instruct.Q4_1.gguf")
            .unwrap();
        let mut magic = [0u8; 4];
        use std::io::Read;
        std::fs::File::open(p)
            .unwrap()
            .read_exact(&mut magic)
            .unwrap();
        assert_eq!(&magic, b"GGUF");
    }
}

#[test]
fn fetched_assets_verify() {
    let cache = Cache::from_env();
    for asset in Asset::ALL {
        let st = status(&cache, asset, true);
        match st.state {
            State::Present => assert_eq!(st.sha256_ok, Some(true), "{asset}: {:?}", st.problem),
            _ => skip(asset),
        }
    }
}
