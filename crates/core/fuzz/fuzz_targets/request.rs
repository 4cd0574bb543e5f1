//! Request decoding from a buffer and from a stream; whatever decodes re-encodes
//! to the same bytes.
#![no_main]

use cairn_core::wire::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::default();
    if let Ok((request, used)) = codec.decode_request_frame(data) {
        assert_eq!(codec.encode_request(&request).unwrap(), &data[..used]);
        assert_eq!(codec.read_request(&mut &data[..]).unwrap(), request);
    } else {
        assert!(codec.read_request(&mut &data[..]).is_err());
    }
});
