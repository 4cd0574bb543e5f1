//! The program's IDL, built without the SBF toolchain through Anchor's
//! `idl-build` feature (the code path of `anchor idl build`).
use anchor_lang_idl::types::Idl;
use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where [`build_idl`] writes the IDL: `target/idl/storage_market.json`.
pub fn idl_path() -> PathBuf {
    workspace_root().join("target/idl/storage_market.json")
}

/// Builds the storage-market IDL and writes it to [`idl_path`].
pub fn build_idl() -> Idl {
    let root = workspace_root();
    let program = root.join("programs/storage-market");
    // Anchor's builder re-invokes cargo with `+$RUSTUP_TOOLCHAIN` when that is
    // set (and mangles it); the plain `cargo` on PATH is the right one here.
    std::env::remove_var("RUSTUP_TOOLCHAIN");
    // Its own target directory: the idl-build feature set and RUSTFLAGS differ
    // from the test build, and the outer cargo may hold the main one's lock.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("idl-build");
    let idl = anchor_lang_idl::build::IdlBuilder::new()
        .program_path(program)
        .skip_lint(true)
        .cargo_args(vec!["--target-dir".into(), target.display().to_string()])
        .build()
        .expect("IDL builds");

    let path = idl_path();
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create target/idl");
    let json = serde_json::to_string_pretty(&idl).expect("serialize IDL");
    std::fs::write(&path, &json).expect("write IDL");
    idl
}
