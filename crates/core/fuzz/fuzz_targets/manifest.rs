//! Manifest decoding: never panics, and whatever decodes is canonical
//! (re-encodes to the same bytes).
#![no_main]

use cairn_core::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data);
        assert_eq!(manifest.id().0, *blake3_of(data));
    }
});

fn blake3_of(data: &[u8]) -> Box<[u8; 32]> {
    Box::new(cairn_core::hash::blake3(data))
}
