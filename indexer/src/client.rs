//! A blocking GET of the indexer's JSON API (reqwest's blocking client), for
//! tools and tests on the same machine (`cairn demo`, the end-to-end tests).
//! Call it from synchronous code, not from inside an async runtime (reqwest's
//! blocking client refuses to block a runtime's thread).
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client without TLS settings builds")
    })
}

/// `GET path` from the indexer at `addr`: the status code and the JSON body.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<(u16, Value), String> {
    let (status, body) = get(addr, path)?;
    let value = serde_json::from_slice(&body)
        .map_err(|e| format!("GET {path}: the body is not JSON ({e})"))?;
    Ok((status, value))
}

/// `GET path` from `addr`: the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let url = format!("http://{addr}{path}");
    let fail = |e: reqwest::Error| format!("GET {url}: {e}");
    let response = client().get(&url).send().map_err(fail)?;
    let status = response.status().as_u16();
    let body = response.bytes().map_err(fail)?;
    Ok((status, body.to_vec()))
}
