//! The file system under the store.

use std::path::Path;

/// Free bytes, available to an unprivileged user, on the file system holding
/// `path`'s directory; `None` if it cannot be read (no parent, no such directory).
pub fn disk_free(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path.parent()?).ok()?;
    #[allow(clippy::unnecessary_cast)] // their widths differ between platforms
    Some((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_the_directory_holding_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let free = disk_free(&dir.path().join("file")).expect("statvfs of a directory");
        assert!(free > 0);
        assert_eq!(disk_free(&dir.path().join("missing/file")), None);
        assert_eq!(disk_free(Path::new("/")), None, "no parent");
    }
}
