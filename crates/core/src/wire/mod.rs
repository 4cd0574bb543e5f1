//! The storage node protocol: request and response frames on QUIC streams.
//!
//! One bidirectional stream carries one request. Each side sends a header frame,
//! then, for `PutShard` (client to node) and a `ShardData` response (node to
//! client), exactly the announced number of raw bytes:
//!
//! ```text
//! frame  = len: u32 LE | version: u8 | type: u8 | body
//!          (len counts version, type and body; at most Codec::max_header_len)
//!
//! Info                                  -> Info { version, operator, free_capacity }
//! PutShard { deal, offset, len, client, signature } + len raw bytes
//!                                       -> PutShard(ShardStatus)
//! GetShard { deal, offset, len }        -> ShardData { offset, len } + len raw bytes
//! GetProof { deal, index }              -> Proof { segment, path }
//! ShardStatus(GetStatus { deal })       -> ShardStatus { state, received, size }
//! any                                   -> Error(WireError { code, message })
//! ```
//!
//! A node that refuses a `PutShard` early (unknown deal, bad signature, wrong
//! offset) answers with an `Error` frame and stops reading the body; a client sends
//! the body while watching for that answer. Integers are little-endian; fixed-size
//! byte arrays are written as is; strings are `u16` length + UTF-8; the proof path
//! is a `u8` count + 32-byte nodes. The [`Codec`] encodes and decodes frames.

mod codec;

pub use codec::{Codec, EncodeError, RawFrame, ReadFrameError};

/// Version byte at the start of every frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// TLS ALPN identifier of the protocol.
pub const ALPN: &[u8] = b"cairn/1";

/// Default bound on a header frame (version, type and body), in bytes.
pub const DEFAULT_MAX_HEADER_LEN: usize = 64 * 1024;

/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;

/// Longest node version string.
pub const MAX_VERSION_LEN: usize = 64;

/// Longest error message.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;

/// Most Merkle path nodes in a proof (a 4 GiB shard of 64-byte segments).
pub const MAX_PROOF_PATH: usize = 26;

/// Domain tag that starts [`PutShard::signing_message`].
pub const PUT_SHARD_DOMAIN: &[u8; 18] = b"cairn/put-shard/v1";

/// Length of [`PutShard::signing_message`].
pub const PUT_SHARD_MESSAGE_LEN: usize = PUT_SHARD_DOMAIN.len() + 32 + 8 + 8;

/// A 32-byte deal account address.
pub type DealId = [u8; 32];

/// A 32-byte ed25519 public key.
pub type Pubkey = [u8; 32];

/// The message type byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// [`Request::Info`].
    InfoRequest = 0x01,
    /// [`Request::PutShard`].
    PutShardRequest = 0x02,
    /// [`Request::GetShard`].
    GetShardRequest = 0x03,
    /// [`Request::GetProof`].
    GetProofRequest = 0x04,
    /// [`Request::ShardStatus`].
    ShardStatusRequest = 0x05,
    /// [`Response::Info`].
    InfoResponse = 0x81,
    /// [`Response::PutShard`].
    PutShardResponse = 0x82,
    /// [`Response::ShardData`].
    ShardDataResponse = 0x83,
    /// [`Response::Proof`].
    ProofResponse = 0x84,
    /// [`Response::ShardStatus`].
    ShardStatusResponse = 0x85,
    /// [`Response::Error`].
    ErrorResponse = 0xEE,
}

impl MessageType {
    /// The type for a byte, if any.
    pub fn from_u8(b: u8) -> Option<Self> {
        use MessageType::*;
        Some(match b {
            0x01 => InfoRequest,
            0x02 => PutShardRequest,
            0x03 => GetShardRequest,
            0x04 => GetProofRequest,
            0x05 => ShardStatusRequest,
            0x81 => InfoResponse,
            0x82 => PutShardResponse,
            0x83 => ShardDataResponse,
            0x84 => ProofResponse,
            0x85 => ShardStatusResponse,
            0xEE => ErrorResponse,
            _ => return None,
        })
    }

    /// Whether this type is sent by clients.
    pub fn is_request(self) -> bool {
        (self as u8) < 0x80
    }
}

/// A request, sent by a client as the first frame of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Who is this node and how much room does it have?
    Info,
    /// Upload shard bytes `offset..offset + len` (the raw bytes follow).
    PutShard(PutShard),
    /// Download shard bytes.
    GetShard(GetShard),
    /// Fetch one 64-byte segment and its Merkle path.
    GetProof(GetProof),
    /// Ask how much of a shard the node holds (the upload resume offset).
    ShardStatus(GetStatus),
}

impl Request {
    /// The frame type of this request.
    pub fn message_type(&self) -> MessageType {
        match self {
            Request::Info => MessageType::InfoRequest,
            Request::PutShard(_) => MessageType::PutShardRequest,
            Request::GetShard(_) => MessageType::GetShardRequest,
            Request::GetProof(_) => MessageType::GetProofRequest,
            Request::ShardStatus(_) => MessageType::ShardStatusRequest,
        }
    }
}

/// Upload of shard bytes, signed by the deal's client. `len` raw bytes follow the
/// header. The node accepts it only for a Proposed deal whose client is `client`,
/// with a valid `signature` over [`PutShard::signing_message`], and at
/// `offset` equal to the bytes it already holds (so an interrupted upload resumes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutShard {
    /// The deal account.
    pub deal: DealId,
    /// Shard offset of the first byte sent.
    pub offset: u64,
    /// Number of bytes sent.
    pub len: u64,
    /// The deal's client (ed25519 public key).
    pub client: Pubkey,
    /// ed25519 signature by `client` over [`PutShard::signing_message`].
    pub signature: [u8; 64],
}

impl PutShard {
    /// The exact bytes the client signs and the node verifies:
    /// `b"cairn/put-shard/v1" || deal || offset (u64 LE) || len (u64 LE)`.
    ///
    /// It authorises this range of this deal's upload; the bytes themselves are
    /// bound by the deal's shard root, which the node checks when the shard is
    /// complete.
    pub fn signing_message(deal: &DealId, offset: u64, len: u64) -> [u8; PUT_SHARD_MESSAGE_LEN] {
        let mut m = [0u8; PUT_SHARD_MESSAGE_LEN];
        let (tag, rest) = m.split_at_mut(PUT_SHARD_DOMAIN.len());
        tag.copy_from_slice(PUT_SHARD_DOMAIN);
        rest[..32].copy_from_slice(deal);
        rest[32..40].copy_from_slice(&offset.to_le_bytes());
        rest[40..48].copy_from_slice(&len.to_le_bytes());
        m
    }

    /// [`PutShard::signing_message`] for this request's fields.
    pub fn message(&self) -> [u8; PUT_SHARD_MESSAGE_LEN] {
        Self::signing_message(&self.deal, self.offset, self.len)
    }
}

/// Download of shard bytes `offset..offset + len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetShard {
    /// The deal account.
    pub deal: DealId,
    /// First byte wanted.
    pub offset: u64,
    /// Number of bytes wanted.
    pub len: u64,
}

/// Request for segment `index` of a shard and its Merkle path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetProof {
    /// The deal account.
    pub deal: DealId,
    /// Segment (leaf) index.
    pub index: u64,
}

/// Request for a shard's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetStatus {
    /// The deal account.
    pub deal: DealId,
}

/// A response, sent by the node as the first frame of its side of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Answer to [`Request::Info`].
    Info(NodeInfo),
    /// Answer to [`Request::PutShard`] once the bytes are in: the shard's status.
    PutShard(ShardStatus),
    /// Answer to [`Request::GetShard`]; `len` raw bytes follow.
    ShardData(ShardData),
    /// Answer to [`Request::GetProof`].
    Proof(Proof),
    /// Answer to [`Request::ShardStatus`].
    ShardStatus(ShardStatus),
    /// The request failed.
    Error(WireError),
}

impl Response {
    /// The frame type of this response.
    pub fn message_type(&self) -> MessageType {
        match self {
            Response::Info(_) => MessageType::InfoResponse,
            Response::PutShard(_) => MessageType::PutShardResponse,
            Response::ShardData(_) => MessageType::ShardDataResponse,
            Response::Proof(_) => MessageType::ProofResponse,
            Response::ShardStatus(_) => MessageType::ShardStatusResponse,
            Response::Error(_) => MessageType::ErrorResponse,
        }
    }
}

/// A node's identity and room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Software version, at most [`MAX_VERSION_LEN`] bytes.
    pub version: String,
    /// The provider's operator key (also the node's TLS identity).
    pub operator: Pubkey,
    /// Bytes the node can still accept.
    pub free_capacity: u64,
}

/// Where a shard upload stands on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ShardState {
    /// Bytes are arriving; `received` is where the upload resumes.
    Receiving = 0,
    /// All bytes are in; the root is being checked.
    Complete = 1,
    /// The root matched the deal's: the node keeps the shard.
    Stored = 2,
    /// The root did not match: the bytes were discarded; upload again from 0.
    Rejected = 3,
}

impl ShardState {
    /// The state for a byte, if any.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => ShardState::Receiving,
            1 => ShardState::Complete,
            2 => ShardState::Stored,
            3 => ShardState::Rejected,
            _ => return None,
        })
    }
}

/// A shard's status on a node. Invariant (checked by the decoder):
/// `received <= size`, and `received == size` when `Complete` or `Stored`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// Where the upload stands.
    pub state: ShardState,
    /// Bytes held: the offset at which an upload resumes.
    pub received: u64,
    /// The deal's shard size.
    pub size: u64,
}

impl ShardStatus {
    /// Whether every byte has arrived.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ShardState::Complete | ShardState::Stored)
    }

    /// Whether the node verified the shard's root against the deal.
    pub fn root_verified(&self) -> bool {
        self.state == ShardState::Stored
    }
}

/// Header of a `GetShard` answer: `len` raw bytes from shard offset `offset`
/// follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardData {
    /// Shard offset of the first byte.
    pub offset: u64,
    /// Number of bytes that follow.
    pub len: u64,
}

/// A segment and its Merkle path (leaf to root), as checked on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The 64-byte segment.
    pub segment: [u8; 64],
    /// Sibling hashes from the leaf up, at most [`MAX_PROOF_PATH`].
    pub path: Vec<[u8; 32]>,
}

/// Why a node refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The request could not be parsed.
    BadRequest = 1,
    /// The deal does not exist or is not with this provider.
    UnknownDeal = 2,
    /// The deal is not Proposed, so no shard upload is accepted.
    NotProposed = 3,
    /// The signature does not verify.
    BadSignature = 4,
    /// The size does not match the deal's shard size.
    WrongSize = 5,
    /// The uploaded shard does not match the deal's root.
    RootMismatch = 6,
    /// The upload does not start at the node's received offset.
    OffsetMismatch = 7,
    /// The request is larger than the node allows.
    TooLarge = 8,
    /// The node has no room for the shard.
    CapacityExceeded = 9,
    /// The node is overloaded.
    Busy = 10,
    /// A range or segment index is outside the shard.
    OutOfRange = 11,
    /// The node does not hold this shard (yet).
    NotStored = 12,
    /// The frame's protocol version is not supported.
    UnsupportedVersion = 13,
    /// Something failed inside the node.
    Internal = 14,
    /// The node's own stored copy failed its integrity check: the node holds no
    /// good copy of these bytes (read from another provider; the shard needs repair).
    CorruptCopy = 15,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownDeal,
        ErrorCode::NotProposed,
        ErrorCode::BadSignature,
        ErrorCode::WrongSize,
        ErrorCode::RootMismatch,
        ErrorCode::OffsetMismatch,
        ErrorCode::TooLarge,
        ErrorCode::CapacityExceeded,
        ErrorCode::Busy,
        ErrorCode::OutOfRange,
        ErrorCode::NotStored,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Internal,
        ErrorCode::CorruptCopy,
    ];

    /// The code for a number, if any.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    /// A sentence for users: what went wrong and what to do.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "the node could not parse the request",
            ErrorCode::UnknownDeal => {
                "the node knows no such deal for this provider; check the deal address"
            }
            ErrorCode::NotProposed => {
                "the deal is not in the Proposed state, so the node accepts no upload for it"
            }
            ErrorCode::BadSignature => {
                "the upload signature does not verify against the deal's client key"
            }
            ErrorCode::WrongSize => "the shard size does not match the deal's shard size",
            ErrorCode::RootMismatch => {
                "the uploaded bytes do not match the deal's shard root; they were discarded"
            }
            ErrorCode::OffsetMismatch => {
                "the upload must resume at the node's received offset; ask for ShardStatus"
            }
            ErrorCode::TooLarge => "the request exceeds the node's size limit",
            ErrorCode::CapacityExceeded => "the node has no free capacity for this shard",
            ErrorCode::Busy => "the node is busy; retry later",
            ErrorCode::OutOfRange => "the requested range or segment is outside the shard",
            ErrorCode::NotStored => "the node does not hold this shard (yet)",
            ErrorCode::UnsupportedVersion => "the node does not speak this protocol version",
            ErrorCode::Internal => "the node hit an internal error; retry or try another provider",
            ErrorCode::CorruptCopy => {
                "the node's stored copy of this shard is corrupt; read it from another provider and repair the shard"
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

/// An error answer: a typed code and a human message with the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({message})")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Details, at most [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub message: String,
}

impl WireError {
    /// An error with `message` cut (at a character boundary) to
    /// [`MAX_ERROR_MESSAGE_LEN`] bytes, so it always encodes.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            let mut cut = MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        WireError { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_message_layout() {
        let m = PutShard::signing_message(&[9; 32], 0x0102, 7);
        assert_eq!(&m[..18], b"cairn/put-shard/v1");
        assert_eq!(&m[18..50], &[9; 32]);
        assert_eq!(&m[50..58], &0x0102u64.to_le_bytes());
        assert_eq!(&m[58..66], &7u64.to_le_bytes());
        // Different ranges sign different bytes.
        assert_ne!(m, PutShard::signing_message(&[9; 32], 0x0102, 8));
    }

    #[test]
    fn error_codes_round_trip_and_read_well() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(16), None);
        let e = WireError::new(ErrorCode::NotProposed, "deal 7xK is Active");
        assert_eq!(
            e.to_string(),
            "the deal is not in the Proposed state, so the node accepts no upload for it \
             (deal 7xK is Active)"
        );
        let long = WireError::new(ErrorCode::Internal, "é".repeat(600));
        assert!(long.message.len() <= MAX_ERROR_MESSAGE_LEN);
    }

    #[test]
    fn message_type_bytes_are_unique() {
        for b in 0..=255u8 {
            if let Some(t) = MessageType::from_u8(b) {
                assert_eq!(t as u8, b);
            }
        }
    }
}
