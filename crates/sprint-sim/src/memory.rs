//! ReRAM main memory timing: channels, banks with an open row each, a data bus per channel.
//!
//! Cycle-exact for its protocol (all times in core cycles): a request reads `bytes` from one
//! row of one bank. If another row is open the bank precharges (`tRP`) and activates
//! (`tRCD`) first; data starts `tCL` after the column command and occupies the channel's
//! bus for `bytes` rounded up to whole `min_transfer_bytes` (a whole burst costs `tBURST`,
//! a chopped one its share), back to back with the previous data on that channel. A bank
//! accepts its next column command as soon as its data can follow on the bus. Not
//! modelled: command-bus conflicts, tRRD/tFAW, refresh (ReRAM has none), write timing
//! (K/V writes happen during the projections).
//!
//! Address map: key (or token) `j` of a head lives on channel `j % C`, bank
//! `(j / C + o) % B` where the offset `o` is the kind's ([`Kind::bank_offset`]: K_MSB,
//! K_LSB, V and Q of one token sit in different banks, SPRINT.md s2), at slot `j / (C B)`
//! of that bank; slots are packed into rows of `row_bytes`, one region per kind. `K_MSB`
//! lives in separate transposable arrays (SPRINT.md s2): a transposed read (one key out of
//! an array) needs its own activation of that array, but leaves the bank's ordinary open
//! row alone.

use crate::config::Memory;
use crate::keyset::{KeySet, count_congruent};

/// What a request reads; each kind is its own region of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Key high halves, transposed read from the transposable arrays.
    KMsb = 0,
    /// Key low halves.
    KLsb = 1,
    /// Whole 8-bit keys (designs without in-memory pruning).
    KWhole = 2,
    /// Values.
    V = 3,
    /// Query vectors.
    Q = 4,
}

impl Kind {
    /// Bank offset of this kind's region, banks: the kinds of one token land in
    /// different banks when the channel has at least 4 (`KWhole` shares K_MSB's offset, as
    /// a design stores one or the other).
    pub fn bank_offset(self) -> usize {
        match self {
            Kind::KMsb | Kind::KWhole => 0,
            Kind::KLsb => 1,
            Kind::V => 2,
            Kind::Q => 3,
        }
    }
}

/// One read of `bytes` from a row of a bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Channel.
    pub channel: u32,
    /// Bank within the channel.
    pub bank: u32,
    /// Region (kind).
    pub kind: Kind,
    /// Row within the region (for `KMsb`: the key index).
    pub row: u64,
    /// Bytes read.
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bank {
    /// Open row of the ordinary arrays.
    open: Option<(Kind, u64)>,
    /// Key whose K_MSB is open in the transposable arrays.
    open_t: Option<u64>,
    ready: u64,
}

/// Timing state of the memory for one head.
#[derive(Clone, Debug)]
pub struct MemoryState {
    cfg: Memory,
    banks: Vec<Bank>,
    bus_free: Vec<u64>,
    /// Row activations issued so far.
    pub activations: u64,
    /// Bursts transferred so far.
    pub bursts: u64,
    /// Pending requests per bank (index `channel x banks + bank`), in arrival order.
    queues: Vec<Vec<Request>>,
    /// Every bank index in the order a batch is drained: bank-major, then channel.
    drain_order: Vec<usize>,
    /// Scratch: the banks with pending requests, in drain order.
    active: Vec<usize>,
    /// Index in its bank's queue of the last pending request per (bank, kind).
    last: Vec<usize>,
    /// Scratch: keys per residue `j mod (channels x banks)` within one row window.
    residue_counts: Vec<u64>,
}

/// Number of [`Kind`]s.
const KINDS: usize = 5;

impl MemoryState {
    /// All banks closed and idle at cycle 0.
    pub fn new(cfg: &Memory) -> Self {
        let n = (cfg.channels * cfg.banks) as usize;
        let (c, b) = (cfg.channels as usize, cfg.banks as usize);
        Self {
            cfg: cfg.clone(),
            banks: vec![Bank::default(); n],
            bus_free: vec![0; c],
            activations: 0,
            bursts: 0,
            queues: vec![Vec::new(); n],
            drain_order: (0..b)
                .flat_map(|bk| (0..c).map(move |ch| ch * b + bk))
                .collect(),
            active: Vec::with_capacity(n),
            last: vec![usize::MAX; n * KINDS],
            residue_counts: vec![0; n],
        }
    }

    /// Channel and bank of `kind` of key (token) `j`, and its slot within the bank.
    #[inline]
    pub fn locate(&self, j: usize, kind: Kind) -> (u32, u32, u64) {
        let c = self.cfg.channels as usize;
        let b = self.cfg.banks as usize;
        if c.is_power_of_two() && b.is_power_of_two() {
            // The same map with shifts and masks (the presets' 4 x 4).
            let (cs, bs) = (c.trailing_zeros(), b.trailing_zeros());
            let jc = j >> cs;
            return (
                (j & (c - 1)) as u32,
                ((jc + kind.bank_offset()) & (b - 1)) as u32,
                (jc >> bs) as u64,
            );
        }
        (
            (j % c) as u32,
            ((j / c + kind.bank_offset()) % b) as u32,
            (j / (c * b)) as u64,
        )
    }

    /// Bus cycles of a transfer of `bytes`: whole bursts at `tBURST`, the rest in smallest
    /// transfers; at least one smallest transfer.
    pub fn transfer_cycles(&self, bytes: u64) -> u64 {
        let m = &self.cfg;
        let chop = u64::from(m.min_transfer_bytes);
        let per_burst = u64::from(m.burst_bytes) / chop;
        if chop.is_power_of_two() && per_burst.is_power_of_two() {
            // The same with shifts and masks (the presets' 32 B of a 64 B burst).
            let chops = ((bytes + chop - 1) >> chop.trailing_zeros()).max(1);
            let full = chops >> per_burst.trailing_zeros();
            return full * m.tburst + (chops & (per_burst - 1)) * m.ttransfer;
        }
        let chops = bytes.div_ceil(chop).max(1);
        (chops / per_burst) * m.tburst + (chops % per_burst) * m.ttransfer
    }

    /// Issues one request no earlier than `t0`; returns the cycle its last data arrives.
    pub fn issue(&mut self, t0: u64, r: Request) -> u64 {
        let busy = self.transfer_cycles(r.bytes);
        let m = &self.cfg;
        let bank = &mut self.banks[(r.channel * m.banks + r.bank) as usize];
        let mut col = t0.max(bank.ready);
        if r.kind == Kind::KMsb {
            if bank.open_t != Some(r.row) {
                let pre = if bank.open_t.is_some() { m.trp } else { 0 };
                col += pre + m.trcd;
                bank.open_t = Some(r.row);
                self.activations += 1;
            }
        } else if bank.open != Some((r.kind, r.row)) {
            let pre = if bank.open.is_some() { m.trp } else { 0 };
            col += pre + m.trcd;
            bank.open = Some((r.kind, r.row));
            self.activations += 1;
        }
        let burst = u64::from(m.burst_bytes);
        let bursts = if burst.is_power_of_two() {
            ((r.bytes + burst - 1) >> burst.trailing_zeros()).max(1)
        } else {
            r.bytes.div_ceil(burst).max(1)
        };
        let bus = &mut self.bus_free[r.channel as usize];
        let start = (col + m.tcl).max(*bus);
        let end = start + busy;
        *bus = end;
        bank.ready = end - m.tcl;
        self.bursts += bursts;
        end
    }

    /// Adds the requests reading `bytes_per_key` bytes of `kind` for every key of `keys`
    /// to the pending batch (grouped per row; `KMsb` one request per key).
    pub fn add(&mut self, keys: KeySet<'_>, kind: Kind, bytes_per_key: u64) {
        if bytes_per_key == 0 {
            return;
        }
        let (c, b) = (self.cfg.channels as usize, self.cfg.banks as usize);
        let per_row = (u64::from(self.cfg.row_bytes) / bytes_per_key).max(1);
        match keys {
            KeySet::Range(lo, hi) if kind != Kind::KMsb => {
                let stride = c * b;
                let off = kind.bank_offset() % b;
                for ch in 0..c {
                    for bk in 0..b {
                        // Keys on bank `bk` have (j / C) % B = (bk - off) mod B.
                        let residue = ((bk + b - off) % b) * c + ch;
                        let n = count_congruent(lo, hi, stride, residue);
                        if n == 0 {
                            continue;
                        }
                        // First key >= lo on this bank, and its slot.
                        let j0 = lo + (residue + stride - lo % stride) % stride;
                        let first = j0 / stride;
                        let mut slot = first as u64;
                        let end = slot + n;
                        while slot < end {
                            let row = slot / per_row;
                            let row_end = ((row + 1) * per_row).min(end);
                            self.push(Request {
                                channel: ch as u32,
                                bank: bk as u32,
                                kind,
                                row,
                                bytes: (row_end - slot) * bytes_per_key,
                            });
                            slot = row_end;
                        }
                    }
                }
            }
            KeySet::Range(lo, hi) => {
                for j in lo..hi {
                    self.add_key(j, kind, bytes_per_key, per_row);
                }
            }
            KeySet::Bits(words) if kind != Kind::KMsb => {
                self.add_bits_by_row(words, kind, bytes_per_key, per_row);
            }
            KeySet::Bits(words) => {
                // K_MSB: one request per key (its own transposed read).
                for (wi, &w) in words.iter().enumerate() {
                    let mut bits = w;
                    while bits != 0 {
                        let j = wi * 64 + bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        let (ch, bk, _) = self.locate(j, kind);
                        self.push(Request {
                            channel: ch,
                            bank: bk,
                            kind,
                            row: j as u64,
                            bytes: bytes_per_key,
                        });
                    }
                }
            }
        }
    }

    /// The requests of a bit set of keys of `kind` (not `KMsb`): the same requests, in the
    /// same order per bank, as adding its keys one by one ([`Self::add_key`]). The keys of
    /// one row of every bank form a window of `channels x banks x per_row` consecutive
    /// keys, and within a window key `j` goes to the bank of residue `j mod (channels x
    /// banks)`; so the keys are counted per residue, window by window, and each (bank, row)
    /// with keys becomes one request (merged with the bank's pending request of that kind
    /// and row, as key-by-key adding would).
    fn add_bits_by_row(&mut self, words: &[u64], kind: Kind, bytes_per_key: u64, per_row: u64) {
        let (c, b) = (self.cfg.channels as usize, self.cfg.banks as usize);
        let stride = c * b;
        let window = stride as u64 * per_row;
        let pow2 = stride.is_power_of_two();
        let mut counts = std::mem::take(&mut self.residue_counts);
        let mut win = 0u64;
        let mut win_end = window;
        let mut any = false;
        for (wi, &w) in words.iter().enumerate() {
            let mut bits = w;
            while bits != 0 {
                let j = wi * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if j as u64 >= win_end {
                    if any {
                        self.emit_window(&mut counts, kind, win, bytes_per_key);
                    }
                    win = j as u64 / window;
                    win_end = (win + 1) * window;
                }
                let r = if pow2 { j & (stride - 1) } else { j % stride };
                counts[r] += 1;
                any = true;
            }
        }
        if any {
            self.emit_window(&mut counts, kind, win, bytes_per_key);
        }
        self.residue_counts = counts;
    }

    /// One request per residue with keys in row window `row` (counts reset to 0).
    fn emit_window(&mut self, counts: &mut [u64], kind: Kind, row: u64, bytes_per_key: u64) {
        let (c, b) = (self.cfg.channels as usize, self.cfg.banks as usize);
        let off = kind.bank_offset();
        for (r, n) in counts.iter_mut().enumerate() {
            if *n == 0 {
                continue;
            }
            let (ch, bk) = (r % c, (r / c + off) % b);
            self.push_merged(ch as u32, bk as u32, kind, row, *n * bytes_per_key);
            *n = 0;
        }
    }

    /// Adds a read of `bytes` of `kind` from `row` of bank (`ch`, `bk`), merged with the
    /// bank's pending request of the same kind when it reads the same row.
    #[inline]
    fn push_merged(&mut self, ch: u32, bk: u32, kind: Kind, row: u64, bytes: u64) {
        let bank_idx = (ch * self.cfg.banks + bk) as usize;
        let i = self.last[bank_idx * KINDS + kind as usize];
        if i != usize::MAX && self.queues[bank_idx][i].row == row {
            self.queues[bank_idx][i].bytes += bytes;
            return;
        }
        self.push(Request {
            channel: ch,
            bank: bk,
            kind,
            row,
            bytes,
        });
    }

    /// Adds the read of key `j`, merged with the pending request of the same bank, kind
    /// and row (`KMsb`: one request per key).
    #[inline]
    fn add_key(&mut self, j: usize, kind: Kind, bytes_per_key: u64, per_row: u64) {
        let (ch, bk, slot) = self.locate(j, kind);
        let row = if kind == Kind::KMsb {
            j as u64
        } else {
            slot / per_row
        };
        let bank_idx = (ch * self.cfg.banks + bk) as usize;
        let slot_idx = bank_idx * KINDS + kind as usize;
        if kind != Kind::KMsb {
            let i = self.last[slot_idx];
            if i != usize::MAX && self.queues[bank_idx][i].row == row {
                self.queues[bank_idx][i].bytes += bytes_per_key;
                return;
            }
        }
        self.push(Request {
            channel: ch,
            bank: bk,
            kind,
            row,
            bytes: bytes_per_key,
        });
    }

    #[inline]
    fn push(&mut self, r: Request) {
        let i = (r.channel * self.cfg.banks + r.bank) as usize;
        let q = &mut self.queues[i];
        // K_MSB requests are never merged, so their position is not needed.
        if r.kind != Kind::KMsb {
            self.last[i * KINDS + r.kind as usize] = q.len();
        }
        q.push(r);
    }

    /// Issues the pending batch no earlier than `t0`, interleaving banks like an FR-FCFS
    /// controller draining a batch: in rounds, one request per bank per round in (bank,
    /// channel) order, each bank's requests in arrival order, and the query vector (always
    /// the first request of its bank) before everything else, as the core needs it first.
    /// Returns `(first data end, last data end)`; `(t0, t0)` for an empty batch.
    pub fn flush(&mut self, t0: u64) -> (u64, u64) {
        let mut active = std::mem::take(&mut self.active);
        active.clear();
        active.extend(
            self.drain_order
                .iter()
                .copied()
                .filter(|&i| !self.queues[i].is_empty()),
        );
        let (mut first, mut last) = (u64::MAX, t0);
        let mut note = |end: u64| {
            first = first.min(end);
            last = last.max(end);
        };
        let mut q_first = false;
        for &i in &active {
            if self.queues[i][0].kind == Kind::Q {
                let r = self.queues[i][0];
                note(self.issue(t0, r));
                q_first = true;
            }
        }
        let rounds = active
            .iter()
            .map(|&i| self.queues[i].len())
            .max()
            .unwrap_or(0);
        let queues = std::mem::take(&mut self.queues);
        for round in 0..rounds {
            for &i in &active {
                let Some(&r) = queues[i].get(round) else {
                    continue;
                };
                if round == 0 && q_first && r.kind == Kind::Q {
                    continue;
                }
                note(self.issue(t0, r));
            }
        }
        self.queues = queues;
        for &i in &active {
            self.queues[i].clear();
            for k in 0..KINDS {
                self.last[i * KINDS + k] = usize::MAX;
            }
        }
        active.clear();
        self.active = active;
        if first == u64::MAX {
            (t0, t0)
        } else {
            (first, last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn memory(channels: u32, banks: u32, row_bytes: u32) -> Memory {
        Memory {
            channels,
            banks,
            burst_bytes: 64,
            row_bytes,
            min_transfer_bytes: 32,
            tburst: 10,
            ttransfer: 5,
            trcd: 25,
            tcl: 15,
            trp: 3,
            taxth: 8,
            readp_activates_row: false,
            crossbar_rows: 64,
            crossbar_columns: 64,
            bytes_per_cycle: 6.4,
        }
    }

    /// A bit set added at once gives exactly the requests, per bank and in order, of
    /// adding its keys one by one (the window-counting path against the key-by-key one),
    /// also merging with a request already pending, for power-of-two and other maps.
    #[test]
    fn bit_sets_give_the_key_by_key_requests() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (c, b, row) in [(4, 4, 4096), (3, 3, 1024), (1, 2, 256), (2, 8, 512)] {
            for density in [0.02, 0.3, 0.9] {
                let n: usize = 1500;
                let mut words = vec![0u64; n.div_ceil(64)];
                for j in 0..n {
                    if rng.random_range(0.0..1.0) < density {
                        words[j / 64] |= 1 << (j % 64);
                    }
                }
                for (kind, bytes) in [(Kind::KLsb, 32), (Kind::V, 64), (Kind::KWhole, 64)] {
                    let cfg = memory(c, b, row);
                    let (mut fast, mut slow) = (MemoryState::new(&cfg), MemoryState::new(&cfg));
                    let per_row = (u64::from(row) / bytes).max(1);
                    for s in [&mut fast, &mut slow] {
                        s.add_key(0, kind, bytes, per_row);
                    }
                    fast.add(KeySet::Bits(&words), kind, bytes);
                    for j in sprint_core::bits::iter_ones(&words) {
                        slow.add_key(j, kind, bytes, per_row);
                    }
                    assert_eq!(fast.queues, slow.queues, "{c}x{b} row {row} {kind:?}");
                    assert_eq!(fast.flush(7), slow.flush(7));
                    assert_eq!(
                        (fast.activations, fast.bursts),
                        (slow.activations, slow.bursts)
                    );
                }
            }
        }
    }
}
