//! Random directory trees: pack_dir -> shards -> decode (m shards lost) ->
//! unpack gives back every file byte for byte.

mod common;

use cairn_core::erasure::ErasureParams;
use cairn_core::manifest::fs::{pack_dir, unpack, Unpacker};
use cairn_core::manifest::Manifest;
use common::{dataset, sources};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "cairn-core-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_tree(root: &Path, data: &common::Dataset) {
    for (path, content) in data {
        let full = root.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
}

fn read_tree(root: &Path) -> common::Dataset {
    fn walk(dir: &Path, prefix: &str, out: &mut common::Dataset) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let rel = format!("{prefix}{name}");
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &format!("{rel}/"), out);
            } else {
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = common::Dataset::new();
    walk(root, "", &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn directories_round_trip(data in dataset(), k in 1u16..=4, m in 1u16..=2, lost_pick in any::<usize>()) {
        let params = ErasureParams::new(k, m, 128).unwrap();
        let src = TempDir::new("src");
        write_tree(&src.0, &data);

        let (manifest, shards) = pack_dir(&src.0, params, vec![Vec::new(); params.n()]).unwrap();
        prop_assert_eq!(manifest.files().len(), data.len());
        let manifest = Manifest::decode(&manifest.encode()).unwrap();

        // Lose m shards.
        let mut keep: Vec<usize> = (0..params.n()).collect();
        for j in 0..params.m() {
            keep.remove(lost_pick.wrapping_add(j * 7) % keep.len());
        }
        let mut dec = manifest.decoder(sources(&shards, &keep)).unwrap();
        let dst = TempDir::new("dst");
        let mut unpacker = Unpacker::new(&manifest, &dst.0).unwrap();
        dec.read_all(&mut unpacker).unwrap();
        unpacker.finish().unwrap();
        prop_assert_eq!(read_tree(&dst.0), data.clone());

        // The plain packed-stream path too.
        let mut packed = Vec::new();
        manifest.decoder(sources(&shards, &keep)).unwrap().read_all(&mut packed).unwrap();
        let dst2 = TempDir::new("dst2");
        unpack(&manifest, &packed[..], &dst2.0).unwrap();
        prop_assert_eq!(read_tree(&dst2.0), data);
    }
}
