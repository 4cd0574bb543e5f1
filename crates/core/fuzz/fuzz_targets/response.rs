//! Response decoding from a buffer and from a stream; whatever decodes re-encodes
//! to the same bytes.
#![no_main]

use cairn_core::wire::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::default();
    if let Ok((response, used)) = codec.decode_response_frame(data) {
        assert_eq!(codec.encode_response(&response).unwrap(), &data[..used]);
        assert_eq!(codec.read_response(&mut &data[..]).unwrap(), response);
    } else {
        assert!(codec.read_response(&mut &data[..]).is_err());
    }
});
