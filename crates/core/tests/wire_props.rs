//! Wire protocol: every message round-trips; arbitrary bytes never panic the
//! decoders; every short input is `Truncated`.

use cairn_core::codec::DecodeError;
use cairn_core::wire::*;
use proptest::prelude::*;

fn arr32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Info),
        (
            arr32(),
            any::<u64>(),
            any::<u64>(),
            arr32(),
            prop::collection::vec(any::<u8>(), 64)
        )
            .prop_map(
                |(deal, offset, len, client, sig)| Request::PutShard(PutShard {
                    deal,
                    offset,
                    len,
                    client,
                    signature: sig.try_into().unwrap(),
                })
            ),
        (arr32(), any::<u64>(), any::<u64>())
            .prop_map(|(deal, offset, len)| Request::GetShard(GetShard { deal, offset, len })),
        (arr32(), any::<u64>())
            .prop_map(|(deal, index)| Request::GetProof(GetProof { deal, index })),
        arr32().prop_map(|deal| Request::ShardStatus(GetStatus { deal })),
    ]
}

fn status() -> impl Strategy<Value = ShardStatus> {
    (0u8..4, any::<u64>(), any::<u64>()).prop_map(|(s, a, b)| {
        let state = ShardState::from_u8(s).unwrap();
        let (size, received) = (a.max(b), a.min(b));
        let received = match state {
            ShardState::Complete | ShardState::Stored => size,
            _ => received,
        };
        ShardStatus {
            state,
            received,
            size,
        }
    })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        ("[ -~é✓]{0,20}", arr32(), any::<u64>()).prop_map(|(version, operator, free_capacity)| {
            Response::Info(NodeInfo {
                version,
                operator,
                free_capacity,
            })
        }),
        status().prop_map(Response::PutShard),
        status().prop_map(Response::ShardStatus),
        (any::<u64>(), any::<u64>())
            .prop_map(|(offset, len)| Response::ShardData(ShardData { offset, len })),
        (
            prop::collection::vec(any::<u8>(), 64),
            prop::collection::vec(arr32(), 0..=MAX_PROOF_PATH)
        )
            .prop_map(|(seg, path)| Response::Proof(Proof {
                segment: seg.try_into().unwrap(),
                path
            })),
        (0usize..ErrorCode::ALL.len(), ".{0,300}")
            .prop_map(|(c, msg)| Response::Error(WireError::new(ErrorCode::ALL[c], msg))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_round_trip(req in request()) {
        let codec = Codec::default();
        let bytes = codec.encode_request(&req).unwrap();
        prop_assert_eq!(codec.decode_request_frame(&bytes).unwrap(), (req.clone(), bytes.len()));
        prop_assert_eq!(codec.read_request(&mut &bytes[..]).unwrap(), req);
        let cut = bytes.len() / 2;
        let truncated = matches!(codec.decode_request_frame(&bytes[..cut]), Err(DecodeError::Truncated { .. }));
        prop_assert!(truncated);
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        let codec = Codec::default();
        let bytes = codec.encode_response(&resp).unwrap();
        prop_assert_eq!(codec.decode_response_frame(&bytes).unwrap(), (resp.clone(), bytes.len()));
        prop_assert_eq!(codec.read_response(&mut &bytes[..]).unwrap(), resp);
        for cut in 0..bytes.len() {
            let truncated = matches!(codec.decode_response_frame(&bytes[..cut]), Err(DecodeError::Truncated { .. }));
            prop_assert!(truncated, "cut at {}", cut);
        }
    }

    /// Arbitrary bytes: decoders return (never panic), and whatever they accept
    /// re-encodes to exactly the same frame (one encoding per message).
    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        t in any::<u8>(),
    ) {
        let codec = Codec::default();
        // Also try a well-formed prefix with a random type and body.
        let mut framed = ((bytes.len() + 2) as u32).to_le_bytes().to_vec();
        framed.push(PROTOCOL_VERSION);
        framed.push(t);
        framed.extend_from_slice(&bytes);
        for input in [&bytes[..], &framed[..]] {
            if let Ok((req, used)) = codec.decode_request_frame(input) {
                prop_assert_eq!(codec.encode_request(&req).unwrap(), input[..used].to_vec());
            }
            if let Ok((resp, used)) = codec.decode_response_frame(input) {
                prop_assert_eq!(codec.encode_response(&resp).unwrap(), input[..used].to_vec());
            }
        }
    }
}
