//! The real transport: the storage node's QUIC client (pinned to each
//! provider's operator key), driven from blocking threads through one tokio
//! runtime.
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anchor_lang::prelude::Pubkey;
use cairn_node_client::client::{ClientError, NodeClient};
use solana_keypair::Keypair;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::dataset::transport::{Connector, Held, Node, TransportError};

/// How long a small request (status) may take before the node counts as
/// failing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a transfer (a shard upload or read) may go without moving a byte
/// before the node counts as failing. A transfer that keeps moving may take
/// as long as it needs, so a slow uplink still uploads a 16 MiB piece.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct QuicConnector {
    runtime: Arc<tokio::runtime::Runtime>,
}

impl QuicConnector {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairnQuic")
            .enable_all()
            .build()?;
        Ok(QuicConnector {
            runtime: Arc::new(runtime),
        })
    }
}

fn resolve(endpoint: &str) -> Result<SocketAddr, TransportError> {
    endpoint
        .to_socket_addrs()
        .map_err(|e| TransportError::unreachable(format!("cannot resolve {endpoint}: {e}")))?
        .next()
        .ok_or_else(|| TransportError::unreachable(format!("{endpoint} resolves to no address")))
}

/// By the client's error variant: the node's typed answer is final (and says
/// which), and so is a node whose TLS identity is not the operator the chain
/// names; anything else may pass on a retry.
fn classify(e: ClientError) -> TransportError {
    match &e {
        ClientError::Refused(answer) => TransportError::answer(answer),
        _ if e.is_wrong_identity() => TransportError::refused(e.to_string()),
        ClientError::Connect { .. }
        | ClientError::Stream(_)
        | ClientError::Source(_)
        | ClientError::Protocol(_) => TransportError::unreachable(e.to_string()),
    }
}

/// When a transfer last moved a byte.
#[derive(Clone)]
struct LastProgress(Arc<Mutex<Instant>>);

impl LastProgress {
    fn new() -> Self {
        LastProgress(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().expect("progress lock") = Instant::now();
    }

    fn at(&self) -> Instant {
        *self.0.lock().expect("progress lock")
    }
}

/// A reader or writer that notes every byte it moves in a [`LastProgress`].
struct Watched<T> {
    inner: T,
    progress: LastProgress,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.progress.touch();
        }
        polled
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Watched<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `transfer` for as long as it keeps making progress: it fails once
/// `progress` has not moved for `stall`.
async fn unless_stalled<T>(
    transfer: impl std::future::Future<Output = Result<T, ClientError>>,
    progress: &LastProgress,
    stall: Duration,
) -> Result<T, TransportError> {
    tokio::pin!(transfer);
    loop {
        let deadline = progress.at() + stall;
        tokio::select! {
            done = &mut transfer => return done.map_err(classify),
            () = tokio::time::sleep_until(deadline) => {
                if progress.at() + stall <= Instant::now() {
                    return Err(TransportError::unreachable(format!(
                        "the transfer made no progress for {stall:?}"
                    )));
                }
            }
        }
    }
}

impl Connector for QuicConnector {
    fn connect(&self, endpoint: &str, operator: &Pubkey) -> Result<Box<dyn Node>, TransportError> {
        let addr = resolve(endpoint)?;
        let client = self.runtime.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT, NodeClient::connect(addr, *operator))
                .await
                .map_err(|_| {
                    TransportError::unreachable(format!(
                        "no answer from {endpoint} in {CONNECT_TIMEOUT:?}"
                    ))
                })?
                .map_err(classify)
        })?;
        Ok(Box::new(QuicNode {
            runtime: self.runtime.clone(),
            client,
        }))
    }
}

struct QuicNode {
    runtime: Arc<tokio::runtime::Runtime>,
    client: NodeClient,
}

impl QuicNode {
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, TransportError> {
        self.runtime.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, f)
                .await
                .map_err(|_| {
                    TransportError::unreachable(format!(
                        "request timed out after {REQUEST_TIMEOUT:?}"
                    ))
                })?
                .map_err(classify)
        })
    }
}

impl Node for QuicNode {
    fn held(&self, deal: &Pubkey) -> Result<Held, TransportError> {
        let s = self.run(self.client.status(deal))?;
        Ok(Held {
            received: s.received,
            complete: s.is_complete() && s.root_verified(),
        })
    }

    fn put(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Held, TransportError> {
        let progress = LastProgress::new();
        let source = Watched {
            inner: bytes,
            progress: progress.clone(),
        };
        let s = self.runtime.block_on(unless_stalled(
            self.client
                .put_shard_from(deal, client, offset, bytes.len() as u64, source),
            &progress,
            STALL_TIMEOUT,
        ))?;
        Ok(Held {
            received: s.received,
            complete: s.is_complete() && s.root_verified(),
        })
    }

    fn get(&self, deal: &Pubkey, offset: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        let progress = LastProgress::new();
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        let sink = Watched {
            inner: &mut out,
            progress: progress.clone(),
        };
        self.runtime.block_on(unless_stalled(
            self.client.get_shard_into(deal, offset, len, sink),
            &progress,
            STALL_TIMEOUT,
        ))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `steps` pieces, `every` apart, each noted as progress.
    async fn trickle(
        progress: LastProgress,
        steps: u32,
        every: Duration,
    ) -> Result<u32, ClientError> {
        for _ in 0..steps {
            tokio::time::sleep(every).await;
            progress.touch();
        }
        Ok(steps)
    }

    #[test]
    fn a_slow_transfer_that_keeps_moving_is_not_cut_but_a_stalled_one_is() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let stall = Duration::from_millis(300);
        rt.block_on(async {
            // Ten pieces 100 ms apart: a second in all, over three times the
            // stall limit, and it completes.
            let progress = LastProgress::new();
            let slow = trickle(progress.clone(), 10, Duration::from_millis(100));
            assert_eq!(unless_stalled(slow, &progress, stall).await, Ok(10));
            // A transfer that stops moving fails after the stall limit.
            let progress = LastProgress::new();
            let started = Instant::now();
            let stuck = trickle(progress.clone(), 2, Duration::from_secs(5));
            let err = unless_stalled(stuck, &progress, stall).await.unwrap_err();
            assert!(!err.refused && err.code.is_none(), "{err:?}");
            assert!(started.elapsed() < Duration::from_secs(2));
        });
    }
}
