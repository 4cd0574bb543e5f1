//! Every message body decoder, reached directly: the first input byte is the
//! message type, the rest the body, framed correctly so the fuzzer spends its
//! time inside the bodies.
#![no_main]

use cairn_core::wire::{Codec, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&message_type, body)) = data.split_first() else {
        return;
    };
    let mut header = vec![PROTOCOL_VERSION, message_type];
    header.extend_from_slice(body);
    let codec = Codec::default();
    if let Ok(request) = codec.decode_request(&header) {
        let frame = codec.encode_request(&request).unwrap();
        assert_eq!(&frame[4..], &header[..]);
    }
    if let Ok(response) = codec.decode_response(&header) {
        let frame = codec.encode_response(&response).unwrap();
        assert_eq!(&frame[4..], &header[..]);
    }
});
