//! Random directory trees: code_dir -> groups of shards -> decode each group
//! (m shards lost) -> unpack gives back every file byte for byte.

mod common;

use cairn_core::manifest::fs::{code_dir, unpack, Unpacker};
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
    fn directories_round_trip(
        data in dataset(),
        k in 1u16..=4,
        m in 1u16..=2,
        group_len in 1u64..2000,
        lost_pick in any::<usize>(),
    ) {
        let src = TempDir::new("src");
        write_tree(&src.0, &data);

        let coded = code_dir(&src.0, k, m, group_len, [7; 32]).unwrap();
        prop_assert_eq!(coded.manifest.files().len(), data.len());
        let manifest = Manifest::decode(&coded.manifest.encode()).unwrap();
        let n = usize::from(k + m);

        // Lose m shards of every group.
        let mut keep: Vec<usize> = (0..n).collect();
        for j in 0..usize::from(m) {
            keep.remove(lost_pick.wrapping_add(j * 7) % keep.len());
        }
        let dst = TempDir::new("dst");
        let mut unpacker = Unpacker::new(&manifest, &dst.0).unwrap();
        let mut packed = Vec::new();
        for (group, shards) in &coded.groups {
            let mut dec = group.decoder(sources(shards, &keep)).unwrap();
            let start = packed.len();
            dec.read_all(&mut packed).unwrap();
            unpacker.write_packed(&packed[start..]).unwrap();
        }
        unpacker.finish().unwrap();
        prop_assert_eq!(read_tree(&dst.0), data.clone());

        // The plain packed-stream path too.
        let dst2 = TempDir::new("dst2");
        unpack(&manifest, &packed[..], &dst2.0).unwrap();
        prop_assert_eq!(read_tree(&dst2.0), data);
    }
}
