//! Grid files: the eval grid's `peer_keep` key (the peers' knobs at equal sparsity).

use sprint_reproduce::grid::Grid;

const EVAL: &str =
    "kind = \"eval\"\nmodels = [\"minilm\"]\ntasks = [\"bbc\"]\nvariants = [\"sanger\"]\n";

#[test]
fn peer_keep_is_read_checked_and_refused_where_it_would_be_ignored() {
    let g = Grid::from_toml_str(&format!("{EVAL}peer_keep = 0.25\n"), "g.toml").unwrap();
    assert_eq!(g.peer_keep, Some(0.25));
    assert_eq!(Grid::from_toml_str(EVAL, "g.toml").unwrap().peer_keep, None);
    let e = Grid::from_toml_str(&format!("{EVAL}peer_keep = 1.5\n"), "g.toml").unwrap_err();
    assert!(e.to_string().contains("peer_keep"), "{e}");
    let sim = "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\npeer_keep = 0.25\n";
    let e = Grid::from_toml_str(sim, "g.toml").unwrap_err();
    assert!(e.to_string().contains("peer_keep"), "{e}");
}
