//! A client of a storage node: one QUIC connection, pinned to the provider's
//! operator key, one stream per request. The CLI uses this module.

use cairn_chain::Pubkey;
use cairn_core::wire::{
    Codec, ErrorCode, GetProof, GetShard, GetStatus, NodeInfo, Proof, PutShard, Request, Response,
    ShardStatus, WireError, LEN_PREFIX,
};
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{net::SocketAddr, time::Duration};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest piece sent or received at once.
const PIECE: usize = 256 * 1024;

/// Why a request to a node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be set up (unreachable, wrong identity, no ALPN).
    #[error("cannot connect to the node at {addr}: {reason}")]
    Connect {
        /// The node's address.
        addr: SocketAddr,
        /// Why.
        reason: ConnectFailure,
    },
    /// The node refused the request.
    #[error("the node refused: {0}")]
    Refused(#[from] WireError),
    /// The connection or the stream failed.
    #[error("connection to the node failed: {0}")]
    Stream(#[from] StreamFailure),
    /// Reading the local bytes to upload failed.
    #[error("reading the shard source: {0}")]
    Source(std::io::Error),
    /// The node answered something that is not a valid answer.
    #[error("the node sent an invalid answer: {0}")]
    Protocol(String),
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// This side's TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// No local UDP socket.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    /// The connection could not be started (a bad address, no endpoint).
    #[error(transparent)]
    Start(#[from] quinn::ConnectError),
    /// The handshake failed: unreachable, timed out, or refused by TLS.
    #[error(transparent)]
    Handshake(#[from] quinn::ConnectionError),
}

/// How a stream to a node broke.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    /// The connection is gone.
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    /// Sending failed.
    #[error(transparent)]
    Write(#[from] quinn::WriteError),
    /// Receiving failed.
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    /// Receiving a fixed-size piece failed.
    #[error(transparent)]
    ReadExact(#[from] quinn::ReadExactError),
    /// The stream was already closed.
    #[error(transparent)]
    Closed(#[from] quinn::ClosedStream),
    /// The node ended the answer early.
    #[error("the node stopped {0} bytes short")]
    Short(u64),
    /// Writing the received bytes locally failed.
    #[error("writing the received bytes: {0}")]
    Sink(std::io::Error),
}

impl ClientError {
    /// The node's error code, if it refused.
    pub fn code(&self) -> Option<cairn_core::wire::ErrorCode> {
        match self {
            ClientError::Refused(e) => Some(e.code),
            _ => None,
        }
    }

    /// Whether the handshake failed in TLS: the node is not the operator the
    /// chain names (or speaks no `cairn/1`). Retrying cannot fix it.
    pub fn is_wrong_identity(&self) -> bool {
        let ClientError::Connect {
            reason: ConnectFailure::Handshake(e),
            ..
        } = self
        else {
            return false;
        };
        let code = match e {
            quinn::ConnectionError::TransportError(t) => t.code,
            quinn::ConnectionError::ConnectionClosed(c) => c.error_code,
            _ => return false,
        };
        // TLS alerts travel as QUIC transport codes 0x100..=0x1ff (RFC 9001, 4.8).
        (0x100..0x200).contains(&u64::from(code))
    }
}

fn stream_err(e: impl Into<StreamFailure>) -> ClientError {
    ClientError::Stream(e.into())
}

/// A connection to one node.
pub struct NodeClient {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    codec: Codec,
}

impl NodeClient {
    /// Connects to `addr`, accepting only a node whose TLS key is `operator`.
    pub async fn connect(addr: SocketAddr, operator: Pubkey) -> Result<NodeClient, ClientError> {
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("address")
        } else {
            "0.0.0.0:0".parse().expect("address")
        };
        Self::connect_from(bind, addr, operator).await
    }

    /// [`NodeClient::connect`] from the local address `bind`.
    pub async fn connect_from(
        bind: SocketAddr,
        addr: SocketAddr,
        operator: Pubkey,
    ) -> Result<NodeClient, ClientError> {
        let connect_err = |reason: ConnectFailure| ClientError::Connect { addr, reason };
        let config = crate::tls::client_config(operator, Duration::from_secs(30))
            .map_err(|e| connect_err(ConnectFailure::Tls(e.to_string())))?;
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.into()))?;
        endpoint.set_default_client_config(config);
        let server_name = solana_tls_utils::socket_addr_to_quic_server_name(addr);
        let connection = endpoint
            .connect(addr, &server_name)
            .map_err(|e| connect_err(e.into()))?
            .await
            .map_err(|e| connect_err(e.into()))?;
        Ok(NodeClient {
            endpoint,
            connection,
            codec: Codec::default(),
        })
    }

    /// The underlying connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    async fn request(
        &self,
        request: &Request,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let (mut send, recv) = self.connection.open_bi().await.map_err(stream_err)?;
        let frame = self
            .codec
            .encode_request(request)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        send.write_all(&frame).await.map_err(stream_err)?;
        Ok((send, recv))
    }

    async fn response(&self, recv: &mut quinn::RecvStream) -> Result<Response, ClientError> {
        read_response(&self.codec, recv).await
    }

    async fn simple(&self, request: Request) -> Result<Response, ClientError> {
        let (mut send, mut recv) = self.request(&request).await?;
        send.finish().map_err(stream_err)?;
        match self.response(&mut recv).await? {
            Response::Error(e) => Err(e.into()),
            other => Ok(other),
        }
    }

    /// The node's identity and free capacity.
    pub async fn info(&self) -> Result<NodeInfo, ClientError> {
        match self.simple(Request::Info).await? {
            Response::Info(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// How much of a deal's shard the node holds.
    pub async fn status(&self, deal: &Pubkey) -> Result<ShardStatus, ClientError> {
        match self
            .simple(Request::ShardStatus(GetStatus {
                deal: deal.to_bytes(),
            }))
            .await?
        {
            Response::ShardStatus(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Uploads `bytes` as shard bytes `offset..offset + bytes.len()`, signed by
    /// the deal's `client`.
    pub async fn put_shard(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        offset: u64,
        bytes: &[u8],
    ) -> Result<ShardStatus, ClientError> {
        self.put_shard_from(deal, client, offset, bytes.len() as u64, bytes)
            .await
    }

    /// Uploads `len` bytes read from `source` as shard bytes
    /// `offset..offset + len`, signed by the deal's `client`. Memory use is one
    /// 256 KiB buffer whatever the size.
    pub async fn put_shard_from<R: AsyncRead + Unpin>(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        offset: u64,
        len: u64,
        source: R,
    ) -> Result<ShardStatus, ClientError> {
        let deal = deal.to_bytes();
        let message = PutShard::signing_message(&deal, offset, len);
        let request = Request::PutShard(PutShard {
            deal,
            offset,
            len,
            client: client.pubkey().to_bytes(),
            signature: client.sign_message(&message).into(),
        });
        self.put_stream(request, len, source).await
    }

    /// Sends an already built `PutShard` request and its body (also used to send
    /// deliberately wrong requests in tests).
    pub async fn put_raw(&self, request: Request, body: &[u8]) -> Result<ShardStatus, ClientError> {
        self.put_stream(request, body.len() as u64, body).await
    }

    async fn put_stream<R: AsyncRead + Unpin>(
        &self,
        request: Request,
        len: u64,
        mut source: R,
    ) -> Result<ShardStatus, ClientError> {
        let (mut send, mut recv) = self.request(&request).await?;
        // The node may refuse early and stop reading: then the write fails and
        // the answer says why.
        let sent = async {
            let mut buf = vec![0u8; PIECE.min(len as usize)];
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                source
                    .read_exact(&mut buf[..n])
                    .await
                    .map_err(ClientError::Source)?;
                send.write_all(&buf[..n]).await.map_err(stream_err)?;
                left -= n as u64;
            }
            send.finish().map_err(stream_err)?;
            Ok::<_, ClientError>(())
        }
        .await;
        if let Err(ClientError::Source(e)) = sent {
            let _ = send.reset(0u32.into());
            return Err(ClientError::Source(e));
        }
        // A node that refuses early stops reading, so the write fails: its answer
        // says why, and is the error reported.
        match (self.response(&mut recv).await, sent) {
            (Ok(Response::PutShard(status)), _) => Ok(status),
            (Ok(Response::Error(e)), _) => Err(e.into()),
            (Ok(other), _) => Err(unexpected(&other)),
            (Err(_), Err(write)) => Err(write),
            (Err(e), Ok(())) => Err(e),
        }
    }

    /// Uploads a whole shard, resuming from the offset the node reports.
    pub async fn upload(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        shard: &[u8],
    ) -> Result<ShardStatus, ClientError> {
        let status = self.status(deal).await?;
        if status.is_complete() {
            return Ok(status);
        }
        let from = status.received.min(shard.len() as u64) as usize;
        self.put_shard(deal, client, from as u64, &shard[from..])
            .await
    }

    /// Downloads shard bytes `offset..offset + len` into memory.
    pub async fn get_shard(
        &self,
        deal: &Pubkey,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        self.get_shard_into(deal, offset, len, &mut out).await?;
        Ok(out)
    }

    /// Streams shard bytes `offset..offset + len` into `sink`, whatever the size.
    pub async fn get_shard_into<W: AsyncWrite + Unpin>(
        &self,
        deal: &Pubkey,
        offset: u64,
        len: u64,
        mut sink: W,
    ) -> Result<(), ClientError> {
        let (mut send, mut recv) = self
            .request(&Request::GetShard(GetShard {
                deal: deal.to_bytes(),
                offset,
                len,
            }))
            .await?;
        send.finish().map_err(stream_err)?;
        match self.response(&mut recv).await? {
            Response::ShardData(d) if d.offset == offset && d.len == len => {
                let mut left = len;
                while left > 0 {
                    let chunk = recv
                        .read_chunk(left.min(PIECE as u64) as usize, true)
                        .await
                        .map_err(reset_refusal)?
                        .ok_or(StreamFailure::Short(left))?;
                    sink.write_all(&chunk.bytes)
                        .await
                        .map_err(StreamFailure::Sink)?;
                    left -= chunk.bytes.len() as u64;
                }
                sink.flush().await.map_err(StreamFailure::Sink)?;
                Ok(())
            }
            Response::Error(e) => Err(e.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// Segment `index` of a deal's shard with its Merkle path.
    pub async fn get_proof(&self, deal: &Pubkey, index: u64) -> Result<Proof, ClientError> {
        match self
            .simple(Request::GetProof(GetProof {
                deal: deal.to_bytes(),
                index,
            }))
            .await?
        {
            Response::Proof(p) => Ok(p),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends raw bytes on a new stream and reads the answer (for tests of
    /// malformed input).
    pub async fn raw(&self, bytes: &[u8]) -> Result<Response, ClientError> {
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(stream_err)?;
        let _ = send.write_all(bytes).await;
        let _ = send.finish();
        self.response(&mut recv).await
    }

    /// Closes the connection and waits for the endpoint to go idle.
    pub async fn close(self) {
        self.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// A read error; a stream the node reset with a wire error code (it found a
/// problem after the answer started, such as its own copy being corrupt) becomes
/// that refusal.
fn reset_refusal(e: quinn::ReadError) -> ClientError {
    if let quinn::ReadError::Reset(code) = &e {
        let code = u16::try_from(code.into_inner())
            .ok()
            .and_then(ErrorCode::from_u16);
        if let Some(code) = code {
            return ClientError::Refused(WireError::new(
                code,
                "the node ended its answer part way",
            ));
        }
    }
    stream_err(e)
}

/// A short read of a response frame. The node may reset the stream with a wire
/// code after it started its answer (a corrupt copy found part way); the reset
/// can overtake the frame itself, so it is that refusal here too.
fn exact_err(e: quinn::ReadExactError) -> ClientError {
    match e {
        quinn::ReadExactError::ReadError(e) => reset_refusal(e),
        other => stream_err(other),
    }
}

fn unexpected(r: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected answer {:?}", r.message_type()))
}

/// Reads one response frame (bounded by the codec) from a stream.
pub async fn read_response(
    codec: &Codec,
    recv: &mut quinn::RecvStream,
) -> Result<Response, ClientError> {
    let mut prefix = [0u8; LEN_PREFIX];
    recv.read_exact(&mut prefix).await.map_err(exact_err)?;
    let len = codec
        .header_len(prefix)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let mut header = vec![0u8; len];
    recv.read_exact(&mut header).await.map_err(exact_err)?;
    codec
        .decode_response(&header)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}
