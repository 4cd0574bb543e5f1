//! The frame layer: length prefix, bound, version and type byte.
#![no_main]

use cairn_core::wire::{Codec, LEN_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small bound as well as the default, so the bound check is exercised.
    for codec in [Codec::default(), Codec::new(64)] {
        if let Ok(prefix) = <[u8; LEN_PREFIX]>::try_from(data.get(..LEN_PREFIX).unwrap_or(&[])) {
            if let Ok(len) = codec.header_len(prefix) {
                assert!((2..=codec.max_header_len()).contains(&len));
            }
        }
        if let Ok(frame) = codec.split_frame(data) {
            assert!(frame.frame_len <= data.len());
            assert!(frame.frame_len - LEN_PREFIX <= codec.max_header_len());
        }
    }
});
