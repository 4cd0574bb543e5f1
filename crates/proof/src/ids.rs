//! Dataset ids, derived so that each names one client's dataset.

use solana_sha256_hasher::hashv;

use crate::Hash;

/// Domain tag of [`dataset_id`].
pub const DATASET_ID_DOMAIN: &[u8] = b"cairn/dataset-id/v1";

/// The id of `client`'s dataset with `nonce`:
/// `sha256("cairn/dataset-id/v1" || client || nonce)`. The program accepts a deal
/// of dataset `d` from client `c` only with a nonce for which `d` is this hash, so
/// nobody else can file deals under a client's dataset id.
pub fn dataset_id(client: &[u8; 32], nonce: &[u8; 32]) -> Hash {
    hashv(&[DATASET_ID_DOMAIN, client, nonce]).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_binds_the_client_and_the_nonce() {
        let id = dataset_id(&[1; 32], &[2; 32]);
        assert_ne!(id, dataset_id(&[3; 32], &[2; 32]));
        assert_ne!(id, dataset_id(&[1; 32], &[4; 32]));
        assert_eq!(id, dataset_id(&[1; 32], &[2; 32]));
    }
}
