//! The local record of an upload, so `cairn upload --resume` finishes an
//! interrupted one without re-encoding or resending completed shards.
use std::path::{Path, PathBuf};

use anchor_lang::prelude::Pubkey;
use serde::{Deserialize, Serialize};

use crate::dataset::prepare::LocalShard;
use crate::error::CliError;

pub const STATE_FILE: &str = "upload.json";
/// 3: one record per erasure group; deals carry the dataset, the group id and
/// number (2: Proving v2 deals of one-group datasets).
const VERSION: u32 = 3;

/// Where a shard is in its upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Encoded on local disk; no deal yet.
    Prepared,
    /// Deal proposed on chain (escrow paid); bytes not all sent.
    Proposed,
    /// The node holds the complete shard with a verified root.
    Sent,
    /// The provider accepted the deal on chain.
    Accepted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardUpload {
    #[serde(flatten)]
    pub local: LocalShard,
    pub stage: Stage,
    /// The placement of the shard the current deal is (0 first; a repair
    /// proposes the next one): part of the deal's address.
    pub generation: u16,
    /// The provider account of the current deal.
    pub provider: Option<String>,
    /// Providers that failed this shard (never chosen again for it).
    pub failed: Vec<String>,
}

impl ShardUpload {
    /// The address of this shard's current deal of `client`'s group `group_id`.
    pub fn deal(&self, client: &Pubkey, group_id: &[u8; 32]) -> Pubkey {
        cairn_chain::deal_pda(client, group_id, self.local.index, self.generation)
    }
}

/// The placement of one erasure group's shards (`upload.json` in the group's
/// work directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub version: u32,
    /// The uploaded directory (absolute).
    pub dir: PathBuf,
    /// BLAKE3 of the group manifest: part of every deal's address.
    pub group_id: String,
    /// The group's number (`INDEX_GROUP` for the index group).
    pub group: u32,
    /// The dataset's nonce: its id is `cairn_chain::dataset_id(client, nonce)`.
    #[serde(with = "crate::dataset::prepare::hex32")]
    pub nonce: [u8; 32],
    pub client: String,
    pub k: u16,
    pub m: u16,
    pub epochs: u64,
    /// Most the client pays per shard per epoch, in base units.
    pub max_price_per_epoch: u64,
    /// Providers never chosen for any shard (a repair avoids every provider the
    /// dataset uses or used).
    pub avoid: Vec<String>,
    pub shards: Vec<ShardUpload>,
}

impl UploadState {
    #[allow(
        clippy::too_many_arguments,
        reason = "one field each, named at the call"
    )]
    pub fn new(
        dir: PathBuf,
        group_id: String,
        group: u32,
        nonce: [u8; 32],
        client: String,
        k: u16,
        m: u16,
        epochs: u64,
        max_price_per_epoch: u64,
        shards: Vec<LocalShard>,
    ) -> Self {
        UploadState {
            version: VERSION,
            dir,
            group_id,
            group,
            nonce,
            client,
            k,
            m,
            epochs,
            max_price_per_epoch,
            avoid: Vec::new(),
            shards: shards
                .into_iter()
                .map(|local| ShardUpload {
                    local,
                    stage: Stage::Prepared,
                    generation: 0,
                    provider: None,
                    failed: Vec::new(),
                })
                .collect(),
        }
    }

    /// Reads `work/upload.json`; `None` if there is none.
    pub fn load(work: &Path) -> Result<Option<Self>, CliError> {
        let path = work.join(STATE_FILE);
        let Some(state) = load_json::<UploadState>(&path)? else {
            return Ok(None);
        };
        if state.version != VERSION {
            return Err(CliError::Io {
                path,
                reason: format!(
                    "upload record version {} (this cairn writes {VERSION})",
                    state.version
                ),
            });
        }
        Ok(Some(state))
    }

    /// Writes `work/upload.json` atomically (temporary file, fsync, rename).
    pub fn save(&self, work: &Path) -> Result<(), CliError> {
        save_json(&work.join(STATE_FILE), self)
    }
}

/// The work directory of `client`'s uploads of `dir`: under `root`, named by
/// the BLAKE3 of the client and the directory's absolute path, so `--resume`
/// finds it again.
pub fn work_dir(root: &Path, client: &str, dir: &Path) -> PathBuf {
    let mut key = client.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    let name = cairn_core::hash::to_hex(&cairn_core::hash::blake3(&key));
    root.join(&name[..32])
}

/// Default root for upload work directories: `$XDG_STATE_HOME/cairn/uploads`
/// or `~/.local/state/cairn/uploads`.
pub fn default_root() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cairn/uploads")
}

/// The local record of a whole dataset upload (`dataset.json` in the work
/// directory). Each group has a work directory of its own (`g<index>/`, and
/// `index/` for the index group) with its [`UploadState`], the entries of the
/// files that ended in it (`entries.json`), and its shard files until it is
/// placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetUpload {
    pub version: u32,
    /// The dataset id.
    pub dataset_id: String,
    /// The uploaded directory (absolute).
    pub dir: PathBuf,
    pub client: String,
    pub k: u16,
    pub m: u16,
    /// Packed bytes per data group.
    pub group_len: u64,
    pub epochs: u64,
    /// Most the client pays per MiB per epoch, in base units (`u64::MAX`: any).
    pub max_price_per_mib: u64,
    /// The dataset's nonce (its id is `cairn_chain::dataset_id(client, nonce)`),
    /// also the salt of its group manifests, so every group id is its own.
    #[serde(with = "crate::dataset::prepare::hex32")]
    pub salt: [u8; 32],
    /// BLAKE3 of what the directory held when the upload began (paths, sizes,
    /// modification times): a resumed upload refuses a changed source.
    pub fingerprint: String,
    /// Data groups in the dataset.
    pub groups: u64,
    /// Ids of the data groups placed so far, in order.
    pub placed: Vec<String>,
    /// Providers that failed a shard of an earlier group: not chosen again by
    /// this upload.
    #[serde(default)]
    pub avoid: Vec<String>,
    /// A private dataset (`upload --encrypt`): the id of the dataset key its
    /// files are encrypted with. Nothing else of the encryption is kept: its
    /// nonces are derived from the key, the salt, each file's path and each
    /// chunk's plaintext (docs/DESIGN.md, "Private datasets"), so a resumed
    /// upload encrypts exactly as the first attempt did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_with: Option<String>,
}

pub const DATASET_FILE: &str = "dataset.json";
/// 3: datasets in groups.
const DATASET_VERSION: u32 = 3;

/// A file entry as kept in a group's `entries.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub path: String,
    pub size: u64,
    pub offset: u64,
    #[serde(with = "crate::dataset::prepare::hex32")]
    pub blake3: [u8; 32],
}

impl From<&cairn_core::FileEntry> for EntryRecord {
    fn from(e: &cairn_core::FileEntry) -> Self {
        EntryRecord {
            path: e.path.clone(),
            size: e.size,
            offset: e.offset,
            blake3: e.blake3,
        }
    }
}

impl From<EntryRecord> for cairn_core::FileEntry {
    fn from(e: EntryRecord) -> Self {
        cairn_core::FileEntry {
            path: e.path,
            size: e.size,
            offset: e.offset,
            blake3: e.blake3,
        }
    }
}

/// Writes `value` as JSON to `path` atomically and durably (temporary file,
/// fsync, rename, fsync of the directory, so the rename itself survives a
/// crash).
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CliError> {
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(value).expect("records serialize");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(CliError::io(path))
}

/// Reads JSON from `path`; `None` if there is no such file.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::io(path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CliError::Io {
            path: path.to_owned(),
            reason: format!("not a record this cairn wrote ({e}); delete it to start over"),
        })
}

impl DatasetUpload {
    #[allow(
        clippy::too_many_arguments,
        reason = "one field each, named at the call"
    )]
    pub fn new(
        dir: PathBuf,
        client: String,
        k: u16,
        m: u16,
        group_len: u64,
        epochs: u64,
        max_price_per_mib: u64,
        salt: [u8; 32],
        fingerprint: String,
        groups: u64,
    ) -> Self {
        let id =
            cairn_chain::dataset_id(&client.parse().expect("a pubkey written by cairn"), &salt);
        DatasetUpload {
            version: DATASET_VERSION,
            dataset_id: cairn_core::hash::to_hex(&id),
            dir,
            client,
            k,
            m,
            group_len,
            epochs,
            max_price_per_mib,
            salt,
            fingerprint,
            groups,
            placed: Vec::new(),
            avoid: Vec::new(),
            encrypted_with: None,
        }
    }

    /// Reads `work/dataset.json`; `None` if there is none.
    pub fn load(work: &Path) -> Result<Option<Self>, CliError> {
        let path = work.join(DATASET_FILE);
        let Some(record) = load_json::<DatasetUpload>(&path)? else {
            return Ok(None);
        };
        if record.version != DATASET_VERSION {
            return Err(CliError::Io {
                path,
                reason: format!(
                    "upload record version {} (this cairn writes {DATASET_VERSION})",
                    record.version
                ),
            });
        }
        Ok(Some(record))
    }

    /// Writes `work/dataset.json` atomically.
    pub fn save(&self, work: &Path) -> Result<(), CliError> {
        save_json(&work.join(DATASET_FILE), self)
    }
}

/// The work directory of data group `index` (`None`: the index group).
pub fn group_dir(work: &Path, index: Option<u64>) -> PathBuf {
    match index {
        Some(g) => work.join(format!("g{g}")),
        None => work.join("index"),
    }
}
