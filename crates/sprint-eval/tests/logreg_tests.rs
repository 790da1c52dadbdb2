//! The linear probe: separable toy data, determinism, argument errors.

use sprint_eval::logreg::{LogRegOptions, LogisticRegression};

/// Three well-separated clusters in 4 dimensions, with a deterministic jitter.
fn toy() -> (Vec<Vec<f32>>, Vec<usize>) {
    let centres = [
        [2.0f32, 0.0, 0.0, 1.0],
        [0.0, 2.0, 0.0, 1.0],
        [0.0, 0.0, 2.0, 1.0],
    ];
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut s = 12345u64;
    let mut jitter = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
    };
    for i in 0..90 {
        let c = i % 3;
        x.push(centres[c].iter().map(|&v| v + jitter()).collect());
        y.push(c);
    }
    (x, y)
}

#[test]
fn separates_a_separable_set() {
    let (x, y) = toy();
    let clf = LogisticRegression::fit(&x, &y, 3, &LogRegOptions::default()).unwrap();
    assert_eq!(clf.predict(&x).unwrap(), y);
    let p = clf.predict_proba(&x[0]).unwrap();
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(p[0] > 0.9, "confident on a training point: {p:?}");
    // A new point near centre 1.
    assert_eq!(clf.predict(&[vec![0.1, 1.9, 0.0, 1.0]]).unwrap(), vec![1]);
}

#[test]
fn training_is_deterministic() {
    let (x, y) = toy();
    let a = LogisticRegression::fit(&x, &y, 3, &LogRegOptions::default()).unwrap();
    let b = LogisticRegression::fit(&x, &y, 3, &LogRegOptions::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_arguments_are_errors() {
    let (x, y) = toy();
    let o = LogRegOptions::default();
    assert!(LogisticRegression::fit(&x, &y[..10], 3, &o).is_err());
    assert!(LogisticRegression::fit(&x, &y, 2, &o).is_err());
    assert!(LogisticRegression::fit(&[], &[], 3, &o).is_err());
    let clf = LogisticRegression::fit(&x, &y, 3, &o).unwrap();
    assert!(clf.predict(&[vec![1.0, 2.0]]).is_err());
}
