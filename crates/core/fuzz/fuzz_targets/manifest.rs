//! Manifest decoding: never panics, and whatever decodes is canonical
//! (re-encodes to the same bytes, and its id is the BLAKE3 of those bytes).
#![no_main]

use cairn_core::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data);
        assert_eq!(manifest.id().0, cairn_core::hash::blake3(data));
    }
});
