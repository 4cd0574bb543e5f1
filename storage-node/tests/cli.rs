//! The `cairn-node` binary: `init` writes a documented config; a bad value,
//! from the file, a flag or the environment, is named in the error.

use std::process::Command;

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn-node"))
}

#[test]
fn init_writes_a_documented_config_and_run_names_a_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    let authority = cairn_chain::Pubkey::new_unique().to_string();
    let out = node()
        .args([
            "--config",
            config.to_str().unwrap(),
            "init",
            "--provider-authority",
            &authority,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("provider_authority = \"{authority}\"")),
        "{text}"
    );
    assert!(
        text.contains("# Bytes of shard data this node accepts in total.\ncapacity_bytes = "),
        "{text}"
    );

    // A second init does not overwrite.
    let again = node()
        .args(["--config", config.to_str().unwrap(), "init"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    // A flag override with a bad value.
    let out = node()
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--capacity-bytes",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("capacity_bytes"), "{err}");

    // An environment override with a bad value.
    let out = node()
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("CAIRN_NODE_RPC_URL", "localhost:8899")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rpc_url"), "{err}");

    // A bad value in the file itself.
    std::fs::write(
        &config,
        text.replace("max_connections = 256", "max_connections = 0"),
    )
    .unwrap();
    let out = node()
        .args(["--config", config.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_connections"), "{err}");
}
