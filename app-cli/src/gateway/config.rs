//! The gateway's config file (TOML): the SigV4 keys it accepts and local
//! bucket names (aliases) for datasets. It holds secret keys, so like a
//! keypair file it is refused when users other than its owner can read it.
//!
//! ```toml
//! [[credentials]]
//! access_key = "team-a"
//! secret_key = "a long random secret"
//!
//! [aliases]
//! imagenet-val = "3f2a…"   # a dataset id, as `cairn ls` prints it
//! ```
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_core::DatasetId;
use serde::Deserialize;

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("gateway config {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error(
        "gateway config {} holds secret keys and is accessible by other users (mode {mode:03o}); \
         run `chmod 600 {}`", path.display(), path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("gateway config {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Access keys and their secrets; SigV4-signed requests must use one.
    #[serde(default)]
    credentials: Vec<Credential>,
    /// Bucket name -> dataset id (64 hex characters).
    #[serde(default)]
    aliases: BTreeMap<String, String>,
}

/// One access key and its secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub access_key: String,
    pub secret_key: String,
}

/// The config, checked.
#[derive(Debug, Default, Clone)]
pub struct GatewayConfig {
    pub credentials: Vec<Credential>,
    pub aliases: BTreeMap<String, DatasetId>,
}

/// Whether `name` may be an alias: an S3 bucket name (3 to 63 lowercase
/// letters, digits, `-` and `.`, starting and ending with a letter or digit)
/// that is not itself a dataset id.
pub fn valid_alias(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.chars().all(ok_char)
        && edge(name.chars().next())
        && edge(name.chars().last())
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read = |reason: String| ConfigError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| read(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file
                .metadata()
                .map_err(|e| read(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(ConfigError::Exposed {
                    path: path.to_path_buf(),
                    mode: mode & 0o777,
                });
            }
        }
        let text = std::io::read_to_string(file).map_err(|e| read(e.to_string()))?;
        Self::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &file.credentials {
            if c.access_key.is_empty() || c.secret_key.is_empty() {
                return Err("a [[credentials]] entry has an empty access_key or secret_key".into());
            }
            if !seen.insert(&c.access_key) {
                return Err(format!("access_key {:?} is listed twice", c.access_key));
            }
        }
        let mut aliases = BTreeMap::new();
        for (name, id) in &file.aliases {
            if !valid_alias(name) || name.parse::<DatasetId>().is_ok() {
                return Err(format!(
                    "alias {name:?} is not a bucket name (3 to 63 lowercase letters, digits, \
                     '-' and '.', not a dataset id)"
                ));
            }
            let id = id
                .parse::<DatasetId>()
                .map_err(|e| format!("alias {name:?}: {id:?} is not a dataset id: {e}"))?;
            aliases.insert(name.clone(), id);
        }
        Ok(GatewayConfig {
            credentials: file.credentials,
            aliases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn credentials_and_aliases_parse_and_bad_entries_are_named() {
        let c = GatewayConfig::parse(&format!(
            "[[credentials]]\naccess_key = \"a\"\nsecret_key = \"s\"\n[aliases]\nmy-data = \"{ID}\"\n"
        ))
        .unwrap();
        assert_eq!(c.credentials[0].access_key, "a");
        assert_eq!(c.aliases["my-data"].to_string(), ID);
        let e = GatewayConfig::parse("[aliases]\nUpper = \"x\"\n").unwrap_err();
        assert!(e.contains("\"Upper\""), "{e}");
        let e = GatewayConfig::parse("[aliases]\nok-name = \"zz\"\n").unwrap_err();
        assert!(e.contains("not a dataset id"), "{e}");
        let twice = "[[credentials]]\naccess_key = \"a\"\nsecret_key = \"s\"\n";
        let e = GatewayConfig::parse(&format!("{twice}{twice}")).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        assert!(GatewayConfig::parse("[[credentials]]\naccess_key = \"a\"\n").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_config_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match GatewayConfig::load(&path) {
            Err(ConfigError::Exposed { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(GatewayConfig::load(&path).unwrap().credentials.is_empty());
    }
}
