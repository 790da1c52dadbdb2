//! Which keys a query may attend to: the one definition of causal visibility shared by the
//! functional model, the model forwards and the simulator.
//!
//! Queries and keys are aligned at the end: with `n_queries <= n_keys` (a decoder step over a
//! KV cache, or a full prefill where both are equal), query `i` is token
//! `i + n_keys - n_queries` of the sequence and sees keys `0..=` that token.

/// Number of leading keys visible to query `i`: with causal masking the keys
/// `0..visible_limit(..)` are visible, without it all `n_keys` keys.
pub fn visible_limit(i: usize, n_queries: usize, n_keys: usize, causal: bool) -> usize {
    if causal {
        (i + 1 + n_keys).saturating_sub(n_queries).min(n_keys)
    } else {
        n_keys
    }
}

/// Clears the bits at positions `>= limit` of a bit-packed row (bit `j % 64` of word `j / 64`).
pub fn clear_from(words: &mut [u64], limit: usize) {
    for (wi, w) in words.iter_mut().enumerate() {
        let lo = wi * 64;
        if lo >= limit {
            *w = 0;
        } else if limit - lo < 64 {
            *w &= (1u64 << (limit - lo)) - 1;
        }
    }
}

/// Number of (query, key) pairs a head scores: real queries times the real keys each sees.
/// `query_valid[i]` / `key_valid[j]` mark real tokens.
pub fn visible_pairs(query_valid: &[bool], key_valid: &[bool], causal: bool) -> u64 {
    let (nq, nk) = (query_valid.len(), key_valid.len());
    // Prefix counts of real keys make the causal sum linear.
    let mut prefix = Vec::with_capacity(nk + 1);
    prefix.push(0u64);
    for &v in key_valid {
        prefix.push(prefix.last().copied().unwrap_or(0) + u64::from(v));
    }
    query_valid
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(i, _)| prefix[visible_limit(i, nq, nk, causal)])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(visible_limit(0, 4, 4, true), 1);
        assert_eq!(visible_limit(3, 4, 4, true), 4);
        assert_eq!(visible_limit(0, 1, 10, true), 10);
        assert_eq!(visible_limit(0, 2, 10, true), 9);
        assert_eq!(visible_limit(2, 4, 4, false), 4);
    }

    #[test]
    fn clear_and_count() {
        let mut w = vec![u64::MAX; 2];
        clear_from(&mut w, 70);
        assert_eq!(w[0], u64::MAX);
        assert_eq!(w[1], (1 << 6) - 1);
        let valid = [true, false, true, true];
        // Causal: query 0 sees key 0; 2 sees 0 and 2; 3 sees 0, 2, 3.
        assert_eq!(visible_pairs(&valid, &valid, true), 1 + 2 + 3);
        assert_eq!(visible_pairs(&valid, &valid, false), 9);
    }
}
