//! Energy: an energy table (component x action -> pJ, each value sourced) times the action
//! counts of a simulation, broken down as the paper's Fig 12a.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SimError};
use crate::sourced::Sourced;

/// `[reram]`: main memory and in-memory pruning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReramEnergy {
    /// Read (memory mode), pJ per bit.
    pub read_pj_per_bit: Sourced<f64>,
    /// Write, pJ per bit.
    pub write_pj_per_bit: Sourced<f64>,
    /// One in-memory multiply-accumulate (4-bit query element x 4-bit K_MSB cell), pJ.
    pub in_memory_mac_pj: Sourced<f64>,
    /// One 1-bit comparator decision (per bitline per query), pJ.
    pub comparator_pj: Sourced<f64>,
    /// One DAC-driven wordline per array per query, pJ.
    pub dac_pj_per_row: Sourced<f64>,
    /// CopyQ, pJ per query bit copied.
    pub copy_q_pj_per_bit: Sourced<f64>,
    /// ReadP, pJ per pruning-vector bit read.
    pub read_p_pj_per_bit: Sourced<f64>,
}

/// `[sram]`: on-chip K/V buffers, per access of `access_bits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SramEnergy {
    /// Bits per access.
    pub access_bits: Sourced<u32>,
    /// Buffer sizes of the entries, KiB (ascending).
    pub sizes_kib: Sourced<Vec<u32>>,
    /// Read energy per access of each size, pJ.
    pub read_pj_per_access: Sourced<Vec<f64>>,
    /// Write energy per access of each size, pJ.
    pub write_pj_per_access: Sourced<Vec<f64>>,
    /// Leakage per 8 KiB of buffer, mW.
    pub leakage_mw_per_8kib: Sourced<f64>,
}

/// `[logic]`: digital arithmetic of the CORELETs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogicEnergy {
    /// 8-bit x 8-bit multiply, pJ.
    pub mult8_pj: Sourced<f64>,
    /// 16-bit add (adder-tree node), pJ.
    pub add16_pj: Sourced<f64>,
    /// 16-bit accumulate (add + register), pJ.
    pub acc16_pj: Sourced<f64>,
    /// Small LUT read (exp table), pJ.
    pub lut_read_pj: Sourced<f64>,
    /// 16-bit divide, pJ.
    pub div16_pj: Sourced<f64>,
    /// Register write, pJ per bit.
    pub reg_pj_per_bit: Sourced<f64>,
}

/// An energy table file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyFile {
    /// Table name.
    pub name: String,
    /// One line about the table.
    pub description: String,
    /// Table this one was derived from (already merged in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherits: Option<String>,
    /// ReRAM.
    pub reram: ReramEnergy,
    /// SRAM buffers.
    pub sram: SramEnergy,
    /// Digital logic.
    pub logic: LogicEnergy,
}

/// A validated energy table.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyTable {
    /// The file, for provenance.
    pub file: EnergyFile,
}

fn check_pj(x: f64, key: &str) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(SimError::config(
            key,
            format!("must be a finite energy >= 0, got {x}"),
        ))
    }
}

impl EnergyFile {
    /// Validates the table: every energy finite and >= 0, the SRAM lists consistent.
    pub fn into_table(self) -> Result<EnergyTable> {
        let r = &self.reram;
        for (v, k) in [
            (r.read_pj_per_bit.value, "reram.read_pj_per_bit"),
            (r.write_pj_per_bit.value, "reram.write_pj_per_bit"),
            (r.in_memory_mac_pj.value, "reram.in_memory_mac_pj"),
            (r.comparator_pj.value, "reram.comparator_pj"),
            (r.dac_pj_per_row.value, "reram.dac_pj_per_row"),
            (r.copy_q_pj_per_bit.value, "reram.copy_q_pj_per_bit"),
            (r.read_p_pj_per_bit.value, "reram.read_p_pj_per_bit"),
            (
                self.sram.leakage_mw_per_8kib.value,
                "sram.leakage_mw_per_8kib",
            ),
            (self.logic.mult8_pj.value, "logic.mult8_pj"),
            (self.logic.add16_pj.value, "logic.add16_pj"),
            (self.logic.acc16_pj.value, "logic.acc16_pj"),
            (self.logic.lut_read_pj.value, "logic.lut_read_pj"),
            (self.logic.div16_pj.value, "logic.div16_pj"),
            (self.logic.reg_pj_per_bit.value, "logic.reg_pj_per_bit"),
        ] {
            check_pj(v, k)?;
        }
        let s = &self.sram;
        let n = s.sizes_kib.value.len();
        if n == 0 {
            return Err(SimError::config(
                "sram.sizes_kib",
                "needs at least one size",
            ));
        }
        if s.access_bits.value == 0 {
            return Err(SimError::config("sram.access_bits", "must be > 0"));
        }
        if !s.sizes_kib.value.windows(2).all(|w| w[0] < w[1]) {
            return Err(SimError::config(
                "sram.sizes_kib",
                "must be strictly ascending",
            ));
        }
        for (list, key) in [
            (&s.read_pj_per_access.value, "sram.read_pj_per_access"),
            (&s.write_pj_per_access.value, "sram.write_pj_per_access"),
        ] {
            if list.len() != n {
                return Err(SimError::config(
                    key,
                    format!("has {} entries, sram.sizes_kib has {n}", list.len()),
                ));
            }
            for &x in list {
                check_pj(x, key)?;
            }
        }
        Ok(EnergyTable { file: self })
    }
}

impl EnergyTable {
    /// Table name.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// (read, write) pJ per bit of a buffer of `bytes`: the smallest listed size that holds it.
    pub fn sram_pj_per_bit(&self, bytes: u64) -> Result<(f64, f64)> {
        let s = &self.file.sram;
        let kib = bytes.div_ceil(1024);
        let i = s
            .sizes_kib
            .value
            .iter()
            .position(|&k| u64::from(k) >= kib)
            .ok_or_else(|| {
                SimError::config(
                    format!("energy table {}: sram.sizes_kib", self.name()),
                    format!(
                        "no entry for a {kib} KiB buffer (largest listed: {:?} KiB)",
                        s.sizes_kib.value.last()
                    ),
                )
            })?;
        let bits = f64::from(s.access_bits.value);
        Ok((
            s.read_pj_per_access.value[i] / bits,
            s.write_pj_per_access.value[i] / bits,
        ))
    }
}

/// Everything a simulation counts that costs energy. All counts are exact integers, so
/// sums over heads are independent of the order and of the thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounts {
    /// Bits read from ReRAM and moved on chip (K, V, Q; not the index).
    pub reram_read_bits: u64,
    /// Bits of K and V written into ReRAM at run time.
    pub reram_write_bits: u64,
    /// Bits of Q written into ReRAM at run time (for CopyQ and the query fetch).
    pub reram_write_q_bits: u64,
    /// In-memory multiply-accumulates (keys scored x head_dim).
    pub in_memory_macs: u64,
    /// Comparator decisions (keys scored).
    pub comparator_decisions: u64,
    /// DAC-driven wordlines (arrays x rows per scored query).
    pub dac_rows: u64,
    /// Bits copied by CopyQ.
    pub copy_q_bits: u64,
    /// Bits read by ReadP.
    pub read_p_bits: u64,
    /// Key-buffer bits read.
    pub sram_k_read_bits: u64,
    /// Key-buffer bits written.
    pub sram_k_write_bits: u64,
    /// Value-buffer bits read.
    pub sram_v_read_bits: u64,
    /// Value-buffer bits written.
    pub sram_v_write_bits: u64,
    /// QK-PU 8-bit multiplies.
    pub qk_mults: u64,
    /// QK-PU adder-tree additions.
    pub qk_adds: u64,
    /// Query register bits written (one query vector per scored query per CORELET).
    pub q_reg_bits: u64,
    /// Softmax exponentials (two LUT reads each) and sum accumulations.
    pub softmax_exps: u64,
    /// Softmax divides (one reciprocal per query per CORELET).
    pub softmax_divides: u64,
    /// Softmax normalisation multiplies (one per probability).
    pub softmax_norm_mults: u64,
    /// V-PU multiply-accumulates.
    pub v_macs: u64,
}

impl std::ops::AddAssign for ActionCounts {
    fn add_assign(&mut self, o: Self) {
        self.reram_read_bits += o.reram_read_bits;
        self.reram_write_bits += o.reram_write_bits;
        self.reram_write_q_bits += o.reram_write_q_bits;
        self.in_memory_macs += o.in_memory_macs;
        self.comparator_decisions += o.comparator_decisions;
        self.dac_rows += o.dac_rows;
        self.copy_q_bits += o.copy_q_bits;
        self.read_p_bits += o.read_p_bits;
        self.sram_k_read_bits += o.sram_k_read_bits;
        self.sram_k_write_bits += o.sram_k_write_bits;
        self.sram_v_read_bits += o.sram_v_read_bits;
        self.sram_v_write_bits += o.sram_v_write_bits;
        self.qk_mults += o.qk_mults;
        self.qk_adds += o.qk_adds;
        self.q_reg_bits += o.q_reg_bits;
        self.softmax_exps += o.softmax_exps;
        self.softmax_divides += o.softmax_divides;
        self.softmax_norm_mults += o.softmax_norm_mults;
        self.v_macs += o.v_macs;
    }
}

/// Energy by component (Fig 12a's categories plus on-chip leakage), pJ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyBreakdown {
    /// ReRAM reads of K, V and Q moved on chip.
    pub reram_read: f64,
    /// ReRAM writes of K and V at run time (Fig 12a's "ReRAM write").
    pub reram_write: f64,
    /// ReRAM writes of Q at run time, apart so that the K/V share can be set against Fig
    /// 12a's (in the Fig 12a total: the energy is spent either way).
    pub reram_write_q: f64,
    /// In-ReRAM pruning: in-memory MACs, comparators, DACs, CopyQ, ReadP.
    pub in_reram_pruning: f64,
    /// On-chip buffer reads.
    pub onchip_read: f64,
    /// On-chip buffer writes.
    pub onchip_write: f64,
    /// QK-PU: multiplies, adder tree, query register.
    pub qk_pu: f64,
    /// V-PU: multiply-accumulates.
    pub v_pu: f64,
    /// Softmax unit: exponentials, sums, divides, normalisation.
    pub softmax: f64,
    /// On-chip buffer leakage over the run time.
    pub onchip_leakage: f64,
}

impl EnergyBreakdown {
    /// Component names and values, in report order.
    pub fn parts(&self) -> [(&'static str, f64); 10] {
        [
            ("reram_read", self.reram_read),
            ("reram_write", self.reram_write),
            ("reram_write_q", self.reram_write_q),
            ("in_reram_pruning", self.in_reram_pruning),
            ("onchip_read", self.onchip_read),
            ("onchip_write", self.onchip_write),
            ("qk_pu", self.qk_pu),
            ("v_pu", self.v_pu),
            ("softmax", self.softmax),
            ("onchip_leakage", self.onchip_leakage),
        ]
    }

    /// Sum of the components, pJ.
    pub fn total(&self) -> f64 {
        self.parts().iter().map(|(_, v)| v).sum()
    }

    /// Sum of Fig 12a's categories (everything but on-chip leakage, which the figure does
    /// not have), pJ.
    pub fn fig12a_total(&self) -> f64 {
        self.total() - self.onchip_leakage
    }
}

/// Energy of `counts`, with `k_buffer_bytes` / `v_buffer_bytes` per CORELET (for the SRAM
/// entry), `buffer_kib_total` of SRAM leaking for `seconds`.
pub fn energy(
    table: &EnergyTable,
    counts: &ActionCounts,
    k_buffer_bytes: u64,
    v_buffer_bytes: u64,
    buffer_bytes_total: u64,
    seconds: f64,
) -> Result<EnergyBreakdown> {
    let f = &table.file;
    let r = &f.reram;
    let l = &f.logic;
    let (k_rd, k_wr) = table.sram_pj_per_bit(k_buffer_bytes)?;
    let (v_rd, v_wr) = table.sram_pj_per_bit(v_buffer_bytes)?;
    let x = |n: u64| n as f64;
    Ok(EnergyBreakdown {
        reram_read: x(counts.reram_read_bits) * r.read_pj_per_bit.value,
        reram_write: x(counts.reram_write_bits) * r.write_pj_per_bit.value,
        reram_write_q: x(counts.reram_write_q_bits) * r.write_pj_per_bit.value,
        in_reram_pruning: x(counts.in_memory_macs) * r.in_memory_mac_pj.value
            + x(counts.comparator_decisions) * r.comparator_pj.value
            + x(counts.dac_rows) * r.dac_pj_per_row.value
            + x(counts.copy_q_bits) * r.copy_q_pj_per_bit.value
            + x(counts.read_p_bits) * r.read_p_pj_per_bit.value,
        onchip_read: x(counts.sram_k_read_bits) * k_rd + x(counts.sram_v_read_bits) * v_rd,
        onchip_write: x(counts.sram_k_write_bits) * k_wr + x(counts.sram_v_write_bits) * v_wr,
        qk_pu: x(counts.qk_mults) * l.mult8_pj.value
            + x(counts.qk_adds) * l.add16_pj.value
            + x(counts.q_reg_bits) * l.reg_pj_per_bit.value,
        v_pu: x(counts.v_macs) * (l.mult8_pj.value + l.acc16_pj.value),
        softmax: x(counts.softmax_exps) * (2.0 * l.lut_read_pj.value + l.acc16_pj.value)
            + x(counts.softmax_divides) * l.div16_pj.value
            + x(counts.softmax_norm_mults) * l.mult8_pj.value,
        // mW x s = mJ = 1e9 pJ.
        onchip_leakage: f.sram.leakage_mw_per_8kib.value
            * (buffer_bytes_total as f64 / 8192.0)
            * seconds
            * 1e9,
    })
}
