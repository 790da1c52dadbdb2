//! In-process memos of deterministic work that several evaluations of one process repeat
//! (a reproduction runs the same dense pass, calibration or variant pass in several
//! stages): the result is kept under everything that determines it and handed out again,
//! bit-identical to computing it anew (every pass is deterministic for a given model,
//! items and configuration, whatever the thread count).
//!
//! A key must name all the inputs of the work it stands for; a key that compares the
//! inputs themselves (token sequences, configurations) rather than a digest of them cannot
//! collide. [`clear`] empties every memo (tests compare memoised with recomputed results):
//! a memo enrols itself in a list of the process's memos when it first keeps a value, so
//! this module needs to know none of the modules that keep memos.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A memo that can forget what it keeps.
trait Forget: Sync {
    /// Forgets every entry.
    fn forget(&self);
}

/// The memos of this process that have kept a value (each once).
static ENROLLED: Mutex<Vec<&'static dyn Forget>> = Mutex::new(Vec::new());

/// A memo of `V` by key `K`, compared by equality (entries are few: a handful per run).
pub(crate) struct Memo<K, V> {
    entries: Mutex<Vec<(K, V)>>,
    /// Whether the memo is in [`ENROLLED`].
    enrolled: AtomicBool,
}

impl<K, V> Memo<K, V> {
    /// An empty memo (for a `static`).
    pub(crate) const fn new() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            enrolled: AtomicBool::new(false),
        }
    }
}

impl<K: PartialEq + Send + 'static, V: Clone + Send + 'static> Memo<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(K, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value kept under `key`, if any.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value` under `key` (the first value stays if two computed it at once: both
    /// are the same).
    pub(crate) fn put(&'static self, key: K, value: V) {
        if !self.enrolled.swap(true, Ordering::AcqRel) {
            ENROLLED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self);
        }
        let mut e = self.lock();
        if !e.iter().any(|(k, _)| *k == key) {
            e.push((key, value));
        }
    }

    /// The value under `key`, computed by `f` (without holding the memo) when absent.
    pub(crate) fn get_or_try<E>(
        &'static self,
        key: K,
        f: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let v = f()?;
        self.put(key, v.clone());
        Ok(v)
    }

    /// Forgets every entry.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

impl<K: PartialEq + Send + 'static, V: Clone + Send + 'static> Forget for Memo<K, V> {
    fn forget(&self) {
        self.clear();
    }
}

/// Empties every memo of the crate: the next evaluation computes everything anew (tests
/// compare a memoised result with a recomputed one).
pub fn clear() {
    for m in ENROLLED.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        m.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_per_key_and_forgets_on_clear() {
        static M: Memo<(String, u32), u64> = Memo::new();
        let calls = std::cell::Cell::new(0);
        let get = |k: &str, n: u32| {
            M.get_or_try::<()>((k.into(), n), || {
                calls.set(calls.get() + 1);
                Ok(u64::from(n) * 10)
            })
            .unwrap()
        };
        assert_eq!(get("a", 1), 10);
        assert_eq!(get("a", 1), 10);
        assert_eq!(get("a", 2), 20);
        assert_eq!(get("b", 1), 10);
        assert_eq!(calls.get(), 3);
        M.clear();
        assert_eq!(M.get(&("a".into(), 1)), None);
        let e: Result<u64, &str> = M.get_or_try(("c".into(), 0), || Err("failed"));
        assert_eq!(e, Err("failed"));
        assert_eq!(M.get(&("c".into(), 0)), None, "an error is not kept");
    }
}
