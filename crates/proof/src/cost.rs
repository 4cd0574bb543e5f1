//! The SHA-256 work the program does to verify one sample, and its compute units
//! under agave's cost table: each `sol_sha256` call costs `85 + Σ max(10, len / 2)`
//! over its input slices (`sha256_base_cost`, `mem_op_base_cost`,
//! `sha256_byte_cost`). The slices are the ones [`crate::draw`], [`crate::leaf_hash`]
//! and [`crate::node_hash`] pass.

use crate::SAMPLE_DOMAIN;

/// `sha256_base_cost` of agave's compute budget.
pub const SHA256_BASE_CU: u64 = 85;
/// `mem_op_base_cost`: the least a slice costs.
pub const SHA256_SLICE_MIN_CU: u64 = 10;

/// Hashing done to check one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashCost {
    /// `sol_sha256` calls.
    pub syscalls: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Compute units of those calls.
    pub compute_units: u64,
}

impl HashCost {
    fn call(&mut self, slices: &[usize]) {
        self.syscalls += 1;
        self.compute_units += SHA256_BASE_CU;
        for len in slices {
            self.bytes += *len as u64;
            self.compute_units += SHA256_SLICE_MIN_CU.max(*len as u64 / 2);
        }
    }

    /// `self` `n` times.
    pub fn times(self, n: u64) -> HashCost {
        HashCost {
            syscalls: self.syscalls * n,
            bytes: self.bytes * n,
            compute_units: self.compute_units * n,
        }
    }
}

/// The hashing of one sample whose path has `depth` levels: its draw, its leaf and
/// one node per level.
pub fn sample_cost(depth: u32) -> HashCost {
    let mut cost = HashCost::default();
    cost.call(&[SAMPLE_DOMAIN.len(), 32, 32, 4]);
    cost.call(&[1, crate::SEGMENT_BYTES]);
    for _ in 0..depth {
        cost.call(&[1, 32, 32]);
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depth_26_sample_is_28_calls_and_about_3_600_compute_units() {
        let cost = sample_cost(26);
        assert_eq!(cost.syscalls, 28);
        assert_eq!(cost.bytes, (15 + 32 + 32 + 4) + 65 + 26 * 65);
        // draw 85+10+16+16+10, leaf 85+10+32, node 85+10+16+16.
        assert_eq!(cost.compute_units, 137 + 127 + 26 * 127);
        assert_eq!(sample_cost(0).syscalls, 2);
    }
}
