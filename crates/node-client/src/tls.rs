//! QUIC TLS: the node's certificate is self-signed with the operator's ed25519
//! key; clients accept exactly the operator key they expect (read from chain).

use cairn_chain::Pubkey;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
use solana_keypair::Keypair;
use std::{sync::Arc, time::Duration};

/// The server's QUIC configuration: certificate from `operator`, ALPN `cairn/1`,
/// stream and idle limits.
pub fn server_config(
    operator: &Keypair,
    max_streams: u32,
    idle_timeout: Duration,
) -> anyhow::Result<quinn::ServerConfig> {
    let (cert, key) = solana_tls_utils::new_dummy_x509_certificate(operator);
    let mut tls =
        rustls::ServerConfig::builder_with_provider(Arc::new(solana_tls_utils::crypto_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![cairn_core::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(max_streams.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_idle_timeout(Some(idle_timeout.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The client's QUIC configuration, accepting only a server whose certificate
/// key is `operator`.
pub fn client_config(
    operator: Pubkey,
    idle_timeout: Duration,
) -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(solana_tls_utils::crypto_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedOperator { operator, provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![cairn_core::wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(idle_timeout.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Accepts a server certificate only if its ed25519 key is the expected operator
/// key; the handshake signature is still checked, so the server holds that key.
#[derive(Debug)]
struct PinnedOperator {
    operator: Pubkey,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOperator {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "a node certificate is self-signed, without intermediates".into(),
            ));
        }
        let key =
            solana_tls_utils::get_pubkey_from_tls_certificate(end_entity).ok_or_else(|| {
                rustls::Error::General("the node certificate holds no ed25519 key".into())
            })?;
        if key.to_bytes() != self.operator.to_bytes() {
            return Err(rustls::Error::General(format!(
                "the node identifies as {key}, but the provider's operator on chain is {}",
                self.operator
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
