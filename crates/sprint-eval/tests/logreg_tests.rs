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

#[test]
fn raw_affine_is_the_decision_function() {
    let (x, y) = toy();
    let clf = LogisticRegression::fit(&x, &y, 3, &LogRegOptions::default()).unwrap();
    let (w, b) = clf.raw_affine();
    for row in x.iter().take(12) {
        let want = clf.decision(row).unwrap();
        for c in 0..3 {
            let got = b[c]
                + (0..4)
                    .map(|j| w[c * 4 + j] * f64::from(row[j]))
                    .sum::<f64>();
            assert!((got - want[c]).abs() < 1e-9, "{got} vs {}", want[c]);
        }
    }
}

/// The training loss of `--task-loss classification` (candle, f32) against the probe's own
/// probabilities (host, f64): the mean of `-ln p(label)` over the chosen rows.
#[test]
fn classification_loss_is_the_probe_cross_entropy() {
    use sprint_eval::probe_loss::ClassificationHead;
    let (x, y) = toy();
    // Labels rotated on every seventh row, so the loss is far from zero.
    let noisy: Vec<usize> = y
        .iter()
        .enumerate()
        .map(|(i, &l)| if i % 7 == 0 { (l + 1) % 3 } else { l })
        .collect();
    let head = ClassificationHead::fit(&x, &noisy, 3).unwrap();
    let clf = LogisticRegression::fit(&x, &noisy, 3, &ClassificationHead::options()).unwrap();
    let items = [0usize, 5, 7, 14, 30, 31, 88];
    let want = items
        .iter()
        .map(|&i| -clf.predict_proba(&x[i]).unwrap()[noisy[i]].ln())
        .sum::<f64>()
        / items.len() as f64;
    let rows: Vec<f32> = items.iter().flat_map(|&i| x[i].clone()).collect();
    let out =
        candle_core::Tensor::from_vec(rows, (items.len(), 4), &candle_core::Device::Cpu).unwrap();
    let got = f64::from(head.loss(&out, &items).unwrap().to_scalar::<f32>().unwrap());
    assert!(want > 0.05, "the rotated labels cost something: {want}");
    assert!((got - want).abs() < 1e-5 * want.max(1.0), "{got} vs {want}");
    let right = clf
        .predict(&x)
        .unwrap()
        .iter()
        .zip(&noisy)
        .filter(|(p, l)| p == l)
        .count();
    assert_eq!(head.train_accuracy, right as f64 / x.len() as f64);
}
