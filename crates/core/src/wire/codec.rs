//! Encoding and decoding of wire frames.

use super::{
    ErrorCode, GetProof, GetShard, GetStatus, MessageType, NodeInfo, Proof, PutShard, Request,
    Response, ShardData, ShardState, ShardStatus, WireError, DEFAULT_MAX_HEADER_LEN, LEN_PREFIX,
    MAX_ERROR_MESSAGE_LEN, MAX_PROOF_PATH, MAX_VERSION_LEN, PROTOCOL_VERSION,
};
use crate::codec::{DecodeError, PutExt, Reader};
use std::io::{self, Read};

/// Why a message cannot be encoded (it would not decode on the other side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field exceeds its bound.
    #[error("field `{field}` is too long: {len} > {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its bound.
        max: usize,
    },
    /// A field combination the decoder rejects.
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The frame exceeds the codec's header bound.
    #[error("frame of {len} bytes exceeds the header limit of {max}")]
    HeaderTooLarge {
        /// Frame length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// Why a frame could not be read from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The stream failed or ended inside the frame.
    #[error("reading the frame failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A frame split from a buffer, body not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// The message type.
    pub message_type: MessageType,
    /// The message body.
    pub body: &'a [u8],
    /// Bytes the whole frame takes in the buffer, length prefix included.
    pub frame_len: usize,
}

/// Frame encoder/decoder with a bound on header size.
///
/// Decoding checks the length prefix against the bound before anything else, so
/// a prefix claiming 4 GiB is rejected without reading or allocating. Every decode
/// error is a [`DecodeError`]; decoders never panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_header_len: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new(DEFAULT_MAX_HEADER_LEN)
    }
}

impl Codec {
    /// A codec accepting header frames of at most `max_header_len` bytes
    /// (version, type and body; at least 2).
    pub const fn new(max_header_len: usize) -> Self {
        let max = if max_header_len < 2 {
            2
        } else {
            max_header_len
        };
        Codec {
            max_header_len: if max > u32::MAX as usize {
                u32::MAX as usize
            } else {
                max
            },
        }
    }

    /// The bound on header frames.
    pub fn max_header_len(&self) -> usize {
        self.max_header_len
    }

    /// Encodes `request` as a frame, length prefix included.
    pub fn encode_request(&self, request: &Request) -> Result<Vec<u8>, EncodeError> {
        let mut out = self.begin(request.message_type());
        match request {
            Request::Info => {}
            Request::PutShard(p) => {
                out.extend_from_slice(&p.deal);
                out.put_u64(p.offset);
                out.put_u64(p.len);
                out.extend_from_slice(&p.client);
                out.extend_from_slice(&p.signature);
            }
            Request::GetShard(g) => {
                out.extend_from_slice(&g.deal);
                out.put_u64(g.offset);
                out.put_u64(g.len);
            }
            Request::GetProof(g) => {
                out.extend_from_slice(&g.deal);
                out.put_u64(g.index);
            }
            Request::ShardStatus(s) => out.extend_from_slice(&s.deal),
        }
        self.end(out)
    }

    /// Encodes `response` as a frame, length prefix included.
    pub fn encode_response(&self, response: &Response) -> Result<Vec<u8>, EncodeError> {
        let mut out = self.begin(response.message_type());
        match response {
            Response::Info(info) => {
                check_len("info.version", info.version.len(), MAX_VERSION_LEN)?;
                out.put_str(&info.version);
                out.extend_from_slice(&info.operator);
                out.put_u64(info.free_capacity);
            }
            Response::PutShard(s) | Response::ShardStatus(s) => {
                check_status(s)
                    .map_err(|(field, reason)| EncodeError::Invalid { field, reason })?;
                out.push(s.state as u8);
                out.put_u64(s.received);
                out.put_u64(s.size);
            }
            Response::ShardData(d) => {
                out.put_u64(d.offset);
                out.put_u64(d.len);
            }
            Response::Proof(p) => {
                check_len("proof.path", p.path.len(), MAX_PROOF_PATH)?;
                out.extend_from_slice(&p.segment);
                out.push(p.path.len() as u8);
                for node in &p.path {
                    out.extend_from_slice(node);
                }
            }
            Response::Error(e) => {
                check_len("error.message", e.message.len(), MAX_ERROR_MESSAGE_LEN)?;
                out.put_u16(e.code as u16);
                out.put_str(&e.message);
            }
        }
        self.end(out)
    }

    /// Checks a frame's 4-byte length prefix and returns the header length to
    /// read next (at least 2, at most [`Codec::max_header_len`]).
    pub fn header_len(&self, prefix: [u8; LEN_PREFIX]) -> Result<usize, DecodeError> {
        let len = u32::from_le_bytes(prefix);
        if len as u64 > self.max_header_len as u64 {
            return Err(DecodeError::HeaderTooLarge {
                len: len as u64,
                max: self.max_header_len,
            });
        }
        if len < 2 {
            return Err(DecodeError::Invalid {
                field: "frame.len",
                reason: "a frame holds at least a version and a type byte",
            });
        }
        Ok(len as usize)
    }

    /// Splits the frame at the start of `buf` (length prefix first), checking the
    /// bound, the version and the type. `Truncated` means more bytes are needed;
    /// bytes after the frame (such as a raw body) are left alone.
    pub fn split_frame<'a>(&self, buf: &'a [u8]) -> Result<RawFrame<'a>, DecodeError> {
        let mut r = Reader::new(buf);
        let len = self.header_len(r.array()?)?;
        let header = r.take(len)?;
        let (message_type, body) = self.split_header(header)?;
        Ok(RawFrame {
            message_type,
            body,
            frame_len: LEN_PREFIX + len,
        })
    }

    /// Decodes a request frame at the start of `buf`; returns it and the frame's
    /// length. Any raw body that follows is not touched.
    pub fn decode_request_frame(&self, buf: &[u8]) -> Result<(Request, usize), DecodeError> {
        let frame = self.split_frame(buf)?;
        Ok((
            decode_request_body(frame.message_type, frame.body)?,
            frame.frame_len,
        ))
    }

    /// Decodes a response frame at the start of `buf`; returns it and the frame's
    /// length. Any raw body that follows is not touched.
    pub fn decode_response_frame(&self, buf: &[u8]) -> Result<(Response, usize), DecodeError> {
        let frame = self.split_frame(buf)?;
        Ok((
            decode_response_body(frame.message_type, frame.body)?,
            frame.frame_len,
        ))
    }

    /// Decodes a request from a header (the `len` bytes after the prefix, as
    /// read after [`Codec::header_len`]).
    pub fn decode_request(&self, header: &[u8]) -> Result<Request, DecodeError> {
        let (t, body) = self.split_header(header)?;
        decode_request_body(t, body)
    }

    /// Decodes a response from a header (the bytes after the prefix).
    pub fn decode_response(&self, header: &[u8]) -> Result<Response, DecodeError> {
        let (t, body) = self.split_header(header)?;
        decode_response_body(t, body)
    }

    /// Reads one request frame from a blocking reader, leaving any raw body in it.
    pub fn read_request<R: Read + ?Sized>(&self, r: &mut R) -> Result<Request, ReadFrameError> {
        let header = self.read_header(r)?;
        Ok(self.decode_request(&header)?)
    }

    /// Reads one response frame from a blocking reader, leaving any raw body in it.
    pub fn read_response<R: Read + ?Sized>(&self, r: &mut R) -> Result<Response, ReadFrameError> {
        let header = self.read_header(r)?;
        Ok(self.decode_response(&header)?)
    }

    fn read_header<R: Read + ?Sized>(&self, r: &mut R) -> Result<Vec<u8>, ReadFrameError> {
        let mut prefix = [0u8; LEN_PREFIX];
        r.read_exact(&mut prefix)?;
        // Bounded by max_header_len before allocating.
        let mut header = vec![0u8; self.header_len(prefix)?];
        r.read_exact(&mut header)?;
        Ok(header)
    }

    fn split_header<'a>(&self, header: &'a [u8]) -> Result<(MessageType, &'a [u8]), DecodeError> {
        if header.len() > self.max_header_len {
            return Err(DecodeError::HeaderTooLarge {
                len: header.len() as u64,
                max: self.max_header_len,
            });
        }
        let mut r = Reader::new(header);
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let t = r.u8()?;
        let t = MessageType::from_u8(t).ok_or(DecodeError::UnknownType(t))?;
        Ok((t, &header[2..]))
    }

    fn begin(&self, t: MessageType) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0; LEN_PREFIX]);
        out.push(PROTOCOL_VERSION);
        out.push(t as u8);
        out
    }

    fn end(&self, mut out: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
        let len = out.len() - LEN_PREFIX;
        if len > self.max_header_len {
            return Err(EncodeError::HeaderTooLarge {
                len,
                max: self.max_header_len,
            });
        }
        out[..LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(out)
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_status(s: &ShardStatus) -> Result<(), (&'static str, &'static str)> {
    if s.received > s.size {
        return Err(("status.received", "more bytes received than the shard size"));
    }
    if s.is_complete() && s.received != s.size {
        return Err(("status.received", "a complete shard has received == size"));
    }
    Ok(())
}

fn decode_request_body(t: MessageType, body: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader::new(body);
    let request = match t {
        MessageType::InfoRequest => Request::Info,
        MessageType::PutShardRequest => Request::PutShard(PutShard {
            deal: r.array()?,
            offset: r.u64()?,
            len: r.u64()?,
            client: r.array()?,
            signature: r.array()?,
        }),
        MessageType::GetShardRequest => Request::GetShard(GetShard {
            deal: r.array()?,
            offset: r.u64()?,
            len: r.u64()?,
        }),
        MessageType::GetProofRequest => Request::GetProof(GetProof {
            deal: r.array()?,
            index: r.u64()?,
        }),
        MessageType::ShardStatusRequest => Request::ShardStatus(GetStatus { deal: r.array()? }),
        other => return Err(DecodeError::UnknownType(other as u8)),
    };
    r.finish()?;
    Ok(request)
}

fn decode_status(r: &mut Reader<'_>) -> Result<ShardStatus, DecodeError> {
    let state = r.u8()?;
    let state = ShardState::from_u8(state).ok_or(DecodeError::Invalid {
        field: "status.state",
        reason: "unknown shard state",
    })?;
    let status = ShardStatus {
        state,
        received: r.u64()?,
        size: r.u64()?,
    };
    check_status(&status).map_err(|(field, reason)| DecodeError::Invalid { field, reason })?;
    Ok(status)
}

fn decode_response_body(t: MessageType, body: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader::new(body);
    let response = match t {
        MessageType::InfoResponse => Response::Info(NodeInfo {
            version: r.string("info.version", MAX_VERSION_LEN)?,
            operator: r.array()?,
            free_capacity: r.u64()?,
        }),
        MessageType::PutShardResponse => Response::PutShard(decode_status(&mut r)?),
        MessageType::ShardStatusResponse => Response::ShardStatus(decode_status(&mut r)?),
        MessageType::ShardDataResponse => Response::ShardData(ShardData {
            offset: r.u64()?,
            len: r.u64()?,
        }),
        MessageType::ProofResponse => {
            let segment = r.array()?;
            let count = r.u8()? as usize;
            if count > MAX_PROOF_PATH {
                return Err(DecodeError::Invalid {
                    field: "proof.path",
                    reason: "more than 26 path nodes",
                });
            }
            let mut path = Vec::with_capacity(count);
            for _ in 0..count {
                path.push(r.array()?);
            }
            Response::Proof(Proof { segment, path })
        }
        MessageType::ErrorResponse => {
            let code = r.u16()?;
            let code = ErrorCode::from_u16(code).ok_or(DecodeError::Invalid {
                field: "error.code",
                reason: "unknown error code",
            })?;
            let message = r.string("error.message", MAX_ERROR_MESSAGE_LEN)?;
            Response::Error(WireError { code, message })
        }
        other => return Err(DecodeError::UnknownType(other as u8)),
    };
    r.finish()?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<Request> {
        vec![
            Request::Info,
            Request::PutShard(PutShard {
                deal: [1; 32],
                offset: 1 << 40,
                len: 12345,
                client: [2; 32],
                signature: [3; 64],
            }),
            Request::GetShard(GetShard {
                deal: [4; 32],
                offset: 7,
                len: u64::MAX,
            }),
            Request::GetProof(GetProof {
                deal: [5; 32],
                index: 99,
            }),
            Request::ShardStatus(GetStatus { deal: [6; 32] }),
        ]
    }

    fn responses() -> Vec<Response> {
        let mut v = vec![
            Response::Info(NodeInfo {
                version: "cairn-node 0.1.0 ✓".into(),
                operator: [7; 32],
                free_capacity: 1 << 50,
            }),
            Response::PutShard(ShardStatus {
                state: ShardState::Stored,
                received: 4096,
                size: 4096,
            }),
            Response::ShardData(ShardData {
                offset: 64,
                len: 128,
            }),
            Response::Proof(Proof {
                segment: [8; 64],
                path: vec![[9; 32]; MAX_PROOF_PATH],
            }),
            Response::Proof(Proof {
                segment: [0; 64],
                path: vec![],
            }),
            Response::ShardStatus(ShardStatus {
                state: ShardState::Receiving,
                received: 10,
                size: 4096,
            }),
            Response::ShardStatus(ShardStatus {
                state: ShardState::Rejected,
                received: 0,
                size: 4096,
            }),
            Response::ShardStatus(ShardStatus {
                state: ShardState::Complete,
                received: 64,
                size: 64,
            }),
        ];
        for code in ErrorCode::ALL {
            v.push(Response::Error(WireError::new(
                code,
                format!("details for {code:?}"),
            )));
        }
        v.push(Response::Error(WireError::new(ErrorCode::Busy, "")));
        v
    }

    #[test]
    fn every_request_round_trips_and_every_prefix_is_truncated() {
        let codec = Codec::default();
        for req in requests() {
            let bytes = codec.encode_request(&req).unwrap();
            let (back, used) = codec.decode_request_frame(&bytes).unwrap();
            assert_eq!(back, req);
            assert_eq!(used, bytes.len());
            assert_eq!(codec.read_request(&mut &bytes[..]).unwrap(), req);
            for cut in 0..bytes.len() {
                assert!(
                    matches!(
                        codec.decode_request_frame(&bytes[..cut]),
                        Err(DecodeError::Truncated { .. })
                    ),
                    "{req:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn every_response_round_trips_and_every_prefix_is_truncated() {
        let codec = Codec::default();
        for resp in responses() {
            let bytes = codec.encode_response(&resp).unwrap();
            let (back, used) = codec.decode_response_frame(&bytes).unwrap();
            assert_eq!(back, resp);
            assert_eq!(used, bytes.len());
            assert_eq!(codec.read_response(&mut &bytes[..]).unwrap(), resp);
            for cut in 0..bytes.len() {
                assert!(
                    matches!(
                        codec.decode_response_frame(&bytes[..cut]),
                        Err(DecodeError::Truncated { .. })
                    ),
                    "{resp:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn raw_body_after_the_frame_is_left_in_place() {
        let codec = Codec::default();
        let mut bytes = codec
            .encode_response(&Response::ShardData(ShardData { offset: 0, len: 3 }))
            .unwrap();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"abc");
        let (_, used) = codec.decode_response_frame(&bytes).unwrap();
        assert_eq!(&bytes[used..], b"abc");
        assert_eq!(used, header_len);
        let mut stream = &bytes[..];
        codec.read_response(&mut stream).unwrap();
        assert_eq!(stream, b"abc");
    }

    #[test]
    fn huge_length_prefix_is_rejected_before_reading() {
        let codec = Codec::default();
        let prefix = u32::MAX.to_le_bytes();
        assert_eq!(
            codec.header_len(prefix),
            Err(DecodeError::HeaderTooLarge {
                len: u32::MAX as u64,
                max: DEFAULT_MAX_HEADER_LEN
            })
        );
        // A reader that would hand out 4 GiB is never asked for it.
        let mut stream = io::Read::chain(&prefix[..], io::repeat(0));
        assert!(matches!(
            codec.read_request(&mut stream),
            Err(ReadFrameError::Decode(DecodeError::HeaderTooLarge { .. }))
        ));
        assert!(matches!(
            codec.header_len(1u32.to_le_bytes()),
            Err(DecodeError::Invalid {
                field: "frame.len",
                ..
            })
        ));
    }

    #[test]
    fn version_type_and_trailing_bytes_are_checked() {
        let codec = Codec::default();
        let good = codec.encode_request(&Request::Info).unwrap();
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(
            codec.decode_request_frame(&b),
            Err(DecodeError::BadVersion(9))
        );
        let mut b = good.clone();
        b[5] = 0x42;
        assert_eq!(
            codec.decode_request_frame(&b),
            Err(DecodeError::UnknownType(0x42))
        );
        // A response type where a request is expected.
        let resp = codec
            .encode_response(&Response::ShardData(ShardData { offset: 0, len: 0 }))
            .unwrap();
        assert_eq!(
            codec.decode_request_frame(&resp),
            Err(DecodeError::UnknownType(0x83))
        );
        assert_eq!(
            codec.decode_response_frame(&good),
            Err(DecodeError::UnknownType(0x01))
        );
        // A body longer than the message inside the declared frame.
        let mut b = good.clone();
        b[0] = 3;
        b.push(0);
        assert_eq!(
            codec.decode_request_frame(&b),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn invalid_fields_are_named() {
        let codec = Codec::default();
        let frame = |t: u8, body: &[u8]| {
            let mut b = ((body.len() + 2) as u32).to_le_bytes().to_vec();
            b.push(PROTOCOL_VERSION);
            b.push(t);
            b.extend_from_slice(body);
            b
        };
        let field = |r: Result<(Response, usize), DecodeError>| match r {
            Err(DecodeError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut proof = vec![0u8; 64];
        proof.push(27);
        assert_eq!(
            field(codec.decode_response_frame(&frame(0x84, &proof))),
            "proof.path"
        );
        assert_eq!(
            field(codec.decode_response_frame(&frame(0xEE, &[0, 0, 0, 0]))),
            "error.code"
        );
        assert_eq!(
            field(codec.decode_response_frame(&frame(0xEE, &[1, 0, 2, 0, 0xff, 0xfe]))),
            "error.message"
        );
        let mut status = vec![9u8];
        status.extend_from_slice(&[0; 16]);
        assert_eq!(
            field(codec.decode_response_frame(&frame(0x85, &status))),
            "status.state"
        );
        let mut status = vec![2u8];
        status.extend_from_slice(&5u64.to_le_bytes());
        status.extend_from_slice(&6u64.to_le_bytes());
        assert_eq!(
            field(codec.decode_response_frame(&frame(0x85, &status))),
            "status.received"
        );
        let mut info = 65u16.to_le_bytes().to_vec();
        info.extend_from_slice(&[b'a'; 65]);
        info.extend_from_slice(&[0; 40]);
        assert_eq!(
            field(codec.decode_response_frame(&frame(0x81, &info))),
            "info.version"
        );
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would_reject() {
        let codec = Codec::default();
        let too_long_path = Response::Proof(Proof {
            segment: [0; 64],
            path: vec![[0; 32]; 27],
        });
        assert!(matches!(
            codec.encode_response(&too_long_path),
            Err(EncodeError::TooLong {
                field: "proof.path",
                ..
            })
        ));
        let bad_status = Response::ShardStatus(ShardStatus {
            state: ShardState::Stored,
            received: 1,
            size: 2,
        });
        assert!(matches!(
            codec.encode_response(&bad_status),
            Err(EncodeError::Invalid {
                field: "status.received",
                ..
            })
        ));
        let tiny = Codec::new(16);
        assert!(matches!(
            tiny.encode_request(&Request::GetShard(GetShard {
                deal: [0; 32],
                offset: 0,
                len: 0
            })),
            Err(EncodeError::HeaderTooLarge { len: 50, max: 16 })
        ));
        // And a small codec refuses big frames from others.
        let big = Codec::default()
            .encode_request(&Request::ShardStatus(GetStatus { deal: [0; 32] }))
            .unwrap();
        assert!(matches!(
            tiny.decode_request_frame(&big),
            Err(DecodeError::HeaderTooLarge { len: 34, max: 16 })
        ));
    }
}
