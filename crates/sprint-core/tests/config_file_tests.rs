//! The shipped example configuration parses and equals the built-in defaults (except the
//! threshold it sets), so the documentation cannot drift from the code.

use sprint_core::config::AttentionConfig;

#[test]
fn shipped_attention_config_matches_defaults() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/attention/sprint.toml"
    );
    let cfg = AttentionConfig::from_file(std::path::Path::new(path)).unwrap();
    let mut expected = AttentionConfig::default();
    expected.threshold.value = 0.0;
    assert_eq!(cfg, expected);
}
