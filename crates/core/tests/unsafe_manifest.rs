//! Hostile manifests, written byte by byte in the documented format, are rejected
//! with an error naming the bad entry.

use cairn_core::manifest::{encoding::MAGIC, Manifest, ManifestError, PathProblem, FORMAT_VERSION};

/// Bytes per data group in [`raw_manifest`].
const GROUP_LEN: u64 = 64;

/// A manifest encoding with arbitrary entries `(path, size, offset)` over a
/// dataset of `total` bytes, no empty directories, and made-up group ids.
fn raw_manifest(entries: &[(&str, u64, u64)], total: u64) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.push(FORMAT_VERSION);
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&GROUP_LEN.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (path, size, offset) in entries {
        b.extend_from_slice(&(path.len() as u16).to_le_bytes());
        b.extend_from_slice(path.as_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&[0u8; 32]);
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    for g in 0..total.div_ceil(GROUP_LEN) {
        b.extend_from_slice(&[g as u8; 32]);
    }
    b
}

#[test]
fn the_helper_writes_the_real_format() {
    let b = raw_manifest(&[("a", 3, 0), ("b/c", 4, 3)], 7);
    let m = Manifest::decode(&b).unwrap();
    assert_eq!(m.files().len(), 2);
    assert_eq!(m.encode(), b);
}

#[test]
fn parent_components_are_rejected_by_name() {
    for evil in ["../x", "a/../../x", "a/..", ".."] {
        let err = Manifest::decode(&raw_manifest(&[(evil, 1, 0)], 1)).unwrap_err();
        assert_eq!(
            err,
            ManifestError::UnsafePath {
                path: evil.into(),
                reason: PathProblem::ParentComponent
            }
        );
        assert!(err.to_string().contains(&format!("{evil:?}")), "{err}");
    }
}

#[test]
fn absolute_and_other_unsafe_paths_are_rejected_by_name() {
    let cases = [
        ("/etc/passwd", PathProblem::Absolute),
        ("C:\\Windows", PathProblem::Backslash),
        ("a//b", PathProblem::EmptyComponent),
        ("./a", PathProblem::CurrentComponent),
        ("", PathProblem::Empty),
        ("bell\u{7}", PathProblem::ControlCharacter),
    ];
    for (path, reason) in cases {
        let err = Manifest::decode(&raw_manifest(&[("ok", 1, 0), (path, 1, 1)], 2)).unwrap_err();
        // The bad entry is named whether or not it sorts first.
        assert!(
            matches!(&err, ManifestError::UnsafePath { path: p, reason: r } if p == path && *r == reason),
            "{path:?}: {err}"
        );
    }
}

#[test]
fn duplicate_paths_are_rejected_by_name() {
    let err =
        Manifest::decode(&raw_manifest(&[("data/x", 1, 0), ("data/x", 1, 1)], 2)).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Duplicate {
            path: "data/x".into()
        }
    );
    assert!(err.to_string().contains("\"data/x\""));
}

#[test]
fn overlapping_offsets_are_rejected_by_name() {
    let err = Manifest::decode(&raw_manifest(&[("a", 10, 0), ("b", 10, 5)], 15)).unwrap_err();
    assert_eq!(
        err,
        ManifestError::Overlap {
            path: "b".into(),
            offset: 5,
            previous: "a".into(),
            previous_end: 10
        }
    );
    assert!(err.to_string().contains("\"b\"") && err.to_string().contains("\"a\""));
    // Two files at the same offset.
    let err = Manifest::decode(&raw_manifest(&[("a", 4, 0), ("b", 4, 0)], 4)).unwrap_err();
    assert!(matches!(err, ManifestError::Overlap { ref path, .. } if path == "b"));
}

#[test]
fn gaps_unsorted_entries_and_file_dir_clashes_are_rejected_by_name() {
    let err = Manifest::decode(&raw_manifest(&[("a", 1, 0), ("b", 1, 2)], 3)).unwrap_err();
    assert!(matches!(err, ManifestError::Gap { ref path, .. } if path == "b"));
    let err = Manifest::decode(&raw_manifest(&[("b", 1, 0), ("a", 1, 1)], 2)).unwrap_err();
    assert!(
        matches!(err, ManifestError::Unsorted { ref path, ref previous } if path == "a" && previous == "b")
    );
    let err = Manifest::decode(&raw_manifest(&[("a", 1, 0), ("a/b", 1, 1)], 2)).unwrap_err();
    assert!(
        matches!(err, ManifestError::FileIsDirectory { ref path, ref child } if path == "a" && child == "a/b")
    );
}

#[test]
fn every_truncation_and_extension_of_a_manifest_is_rejected() {
    let b = raw_manifest(&[("a", 100, 0), ("dir/ü b", 300, 100)], 400);
    Manifest::decode(&b).unwrap();
    for len in 0..b.len() {
        assert!(
            Manifest::decode(&b[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut longer = b.clone();
    longer.extend_from_slice(&[0; 32]);
    assert!(Manifest::decode(&longer).is_err());
}
