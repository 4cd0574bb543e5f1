//! The two hash functions of the tree and the hashes of all-padding subtrees.

use solana_sha256_hasher::hashv;

use crate::{MAX_DEPTH, SEGMENT_BYTES};

/// A SHA-256 digest: a leaf, an inner node or a root.
pub type Hash = [u8; 32];

/// Domain separation byte prefixed to a segment before hashing it as a leaf.
const LEAF_PREFIX: [u8; 1] = [0x00];
/// Domain separation byte prefixed to two child hashes before hashing them as a node.
const NODE_PREFIX: [u8; 1] = [0x01];

/// Leaf hash of one 64-byte segment: `sha256(0x00 || segment)`.
#[inline]
pub fn leaf_hash(segment: &[u8; SEGMENT_BYTES]) -> Hash {
    hashv(&[&LEAF_PREFIX, segment]).to_bytes()
}

/// Inner node hash of two children: `sha256(0x01 || left || right)`.
#[inline]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    hashv(&[&NODE_PREFIX, left, right]).to_bytes()
}

/// Root of a subtree of height `level` whose leaves are all padding (all-zero
/// segments): level 0 is `leaf_hash(&[0; 64])`, level `l` is
/// `node_hash(e(l-1), e(l-1))`.
///
/// Levels up to [`MAX_DEPTH`] come from a constant table (checked against the
/// definition in the tests); deeper levels, which no valid proof uses, are hashed on
/// demand from the top of the table.
pub fn empty_subtree(level: u32) -> Hash {
    match EMPTY_SUBTREES.get(level as usize) {
        Some(hash) => *hash,
        None => {
            let mut hash = EMPTY_SUBTREES[MAX_DEPTH as usize];
            for _ in MAX_DEPTH..level {
                hash = node_hash(&hash, &hash);
            }
            hash
        }
    }
}

/// Parses 64 hex digits at compile time; the table below stays readable and greppable.
const fn hex32(hex: &str) -> Hash {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let hex = hex.as_bytes();
    assert!(hex.len() == 64, "a hash is 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(hex[2 * i]) << 4) | nibble(hex[2 * i + 1]);
        i += 1;
    }
    out
}

/// `EMPTY_SUBTREES[l]` is [`empty_subtree`]`(l)` for `l` in `0..=MAX_DEPTH`.
const EMPTY_SUBTREES: [Hash; MAX_DEPTH as usize + 1] = [
    // level 0
    hex32("98ce42deef51d40269d542f5314bef2c7468d401ad5d85168bfab4c0108f75f7"),
    // level 1
    hex32("f3a095b390bfe3a545a3511ee66cec09d59618cea8457ac41c36ea7aa845f208"),
    // level 2
    hex32("fcb259589968edea4118162766fb08f479bfb3119cad97f376746ae4f7c9562a"),
    // level 3
    hex32("0aaf5dd13887d6a7f4029b1230add911802a82288db55dc51363da0e83cb1f82"),
    // level 4
    hex32("ea961b518a7c78ad111b739b4b61fcc12df5c7a57b11284dce8ab450b50a2d92"),
    // level 5
    hex32("7a0e5a93ca73bc7d34fbcc0effb66005adaf3addd199dd77b989865dc6d11ddd"),
    // level 6
    hex32("72b3c48e0862ee0b5f7ce7e50ff4b8d02336b2b2c5818d86e370d3fc560f3963"),
    // level 7
    hex32("533a4a0f6dc3502381bb9e160c78966ba03315baf71770ef76a3e78d1fcbcd2f"),
    // level 8
    hex32("0be2778138d8a58e4da558681f7a737e7cf02318d4b37f8c03e09b07dd97dabc"),
    // level 9
    hex32("12446d01d26e9b5c2fd71426d89b9952d6bba48b5530b9e6056b5798f93ee05e"),
    // level 10
    hex32("072a93599fbfa5d13a6930cd76f3df0099a8606e2eb1b91e3704de7791602e79"),
    // level 11
    hex32("b2eabd81b78ef13e8ce598f997f08363725fb396b8fbaa7529adebb6521f9b30"),
    // level 12
    hex32("ff70e4d168bcd91573d8837102f5176bed80035070eeb37c294e002a296c3138"),
    // level 13
    hex32("63f0657970a1da82f46b85bcc806dce0f02a2775f1101e4783c82d887e0bdb78"),
    // level 14
    hex32("88b28e5410b852295a308a6a2ec4f1a349c288830a452239952423622be5afbf"),
    // level 15
    hex32("63ec94cf3755eb978e19bb661dd5cc1c6e9d6c4451b23abd51ee8008ad2f6821"),
    // level 16
    hex32("82a6d9887014256cf9e6141e8d0566bd0f96a9729d1358e9b44cfd1bb5396494"),
    // level 17
    hex32("325f0e0e66e028752c38adabdb917e22a172fa6a0ea78b05a80d0530e56f1e34"),
    // level 18
    hex32("d8865a1eff79229dc8e8726a67db77bf8550822b92196f25b148f760f0e6ac89"),
    // level 19
    hex32("925ca4fe8b72558dd5c5abbb51a2c23d38402119461dc7ac92321629643c2d55"),
    // level 20
    hex32("4f6e5d7244367466fc406a025a24ecd32bba3cdd2f58d36cb68aff99eecd5707"),
    // level 21
    hex32("96999e1bbcb6f86e0dd46d7e90d140ecd9940c99a2df76257af5ef93b1d0b919"),
    // level 22
    hex32("2b09d7a1658340845a61c2e4f68f3e06c3370afe0164ae84fa3fbea542ba2399"),
    // level 23
    hex32("d5c2e43fca570151fc3cc0d144d266aab267197c856260d2778c5044ae31aac4"),
    // level 24
    hex32("fb2df8b6063f2211e60a1e35299024d9f60c88ec89b731fa048450cd57ce003c"),
    // level 25
    hex32("3298ecd45325a53b3779d4928f66a3533d143cc294593d2eed5f00041de79581"),
    // level 26
    hex32("2208a7b42124bb783dd328e2b2c00076e0b97e800091737331c499106bf41939"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use solana_sha256_hasher::hashv;

    fn sha256(parts: &[&[u8]]) -> Hash {
        hashv(parts).to_bytes()
    }

    #[test]
    fn leaf_and_node_hash_follow_the_format() {
        let mut segment = [0u8; 64];
        segment[0] = 7;
        segment[63] = 9;
        let mut leaf_input = [0u8; 65];
        leaf_input[1..].copy_from_slice(&segment);
        assert_eq!(leaf_hash(&segment), sha256(&[&leaf_input]));

        let left = [3u8; 32];
        let right = [4u8; 32];
        let mut node_input = [0u8; 65];
        node_input[0] = 1;
        node_input[1..33].copy_from_slice(&left);
        node_input[33..].copy_from_slice(&right);
        assert_eq!(node_hash(&left, &right), sha256(&[&node_input]));
        assert_ne!(node_hash(&left, &right), node_hash(&right, &left));
    }

    #[test]
    fn leaf_and_node_domains_differ() {
        // 64 bytes that read as a node's two children must not collide with that node.
        let mut segment = [0u8; 64];
        segment[..32].copy_from_slice(&[5u8; 32]);
        segment[32..].copy_from_slice(&[6u8; 32]);
        assert_ne!(leaf_hash(&segment), node_hash(&[5u8; 32], &[6u8; 32]));
    }

    #[test]
    fn empty_subtree_table_matches_definition() {
        let mut expected = sha256(&[&[0u8; 65]]);
        for level in 0..=MAX_DEPTH + 3 {
            assert_eq!(empty_subtree(level), expected, "level {level}");
            expected = sha256(&[&[1u8], &expected, &expected]);
        }
    }
}
