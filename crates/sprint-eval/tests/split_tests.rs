//! Deterministic data handling: subsets, passages, windows, task names.

use sprint_assets::data::{Novel, stratified_split};
use sprint_eval::Task;
use sprint_eval::tasks::{austen_passages, subset, windows};

#[test]
fn subsets_are_seeded_and_sorted() {
    let a = subset(1000, Some(100), 5);
    assert_eq!(a.len(), 100);
    assert!(a.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(a, subset(1000, Some(100), 5));
    assert_ne!(a, subset(1000, Some(100), 6));
    assert_eq!(subset(10, None, 1), (0..10).collect::<Vec<_>>());
    assert_eq!(subset(10, Some(20), 1), (0..10).collect::<Vec<_>>());
}

#[test]
fn stratified_split_is_reproducible() {
    let labels: Vec<usize> = (0..200).map(|i| i % 5).collect();
    let a = stratified_split(&labels, 0.2, 9).unwrap();
    assert_eq!(a, stratified_split(&labels, 0.2, 9).unwrap());
    assert_eq!(a.test.len(), 40);
    for l in 0..5 {
        assert_eq!(a.test.iter().filter(|&&i| labels[i] == l).count(), 8);
    }
}

#[test]
fn passages_have_fixed_word_counts() {
    let novels = vec![
        Novel {
            id: "a",
            title: "A",
            text: (0..450)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" \n"),
        },
        Novel {
            id: "b",
            title: "B",
            text: "one two three".into(),
        },
    ];
    let c = austen_passages(&novels, 200);
    assert_eq!(c.labels, vec!["A", "B"]);
    assert_eq!(c.docs.len(), 2);
    assert!(
        c.docs
            .iter()
            .all(|d| d.text.split(' ').count() == 200 && d.label == 0)
    );
    assert!(c.docs[1].text.starts_with("w200 w201"));
}

#[test]
fn windows_do_not_overlap_and_drop_the_tail() {
    let ids: Vec<u32> = (0..10).collect();
    let w = windows(&ids, 4);
    assert_eq!(w, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7][..]]);
    assert!(windows(&ids, 0).is_empty());
}

#[test]
fn task_names_round_trip() {
    for t in Task::ALL {
        assert_eq!(Task::parse(t.name()).unwrap(), t);
    }
    assert!(Task::parse("imagenet").is_err());
}
