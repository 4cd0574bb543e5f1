//! Manifest decoding (dataset and group manifests): never panics, and whatever
//! decodes is canonical (re-encodes to the same bytes).
#![no_main]

use cairn_core::group::GroupManifest;
use cairn_core::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data);
    }
    if let Ok(group) = GroupManifest::decode(data) {
        assert_eq!(group.encode(), data);
        assert_eq!(group.id().0, cairn_core::hash::blake3(data));
    }
});
