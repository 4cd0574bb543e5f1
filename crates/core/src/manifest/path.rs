//! Which relative paths a manifest may hold.

/// Longest accepted path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Longest accepted path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Why a path is not a safe relative path inside a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// The path is empty.
    #[error("the path is empty")]
    Empty,
    /// The path starts with `/`.
    #[error("it is absolute (starts with '/')")]
    Absolute,
    /// A component is `..`, which would escape the dataset root.
    #[error("it has a '..' component, which would escape the dataset root")]
    ParentComponent,
    /// A component is `.`.
    #[error("it has a '.' component")]
    CurrentComponent,
    /// Two `/` in a row, or a trailing `/`.
    #[error("it has an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    /// A `\`, which is a separator on Windows and could escape there.
    #[error("it contains a backslash, a path separator on Windows")]
    Backslash,
    /// A control character (U+0000 to U+001F, or U+007F).
    #[error("it contains a control character")]
    ControlCharacter,
    /// The path is longer than [`MAX_PATH_LEN`] bytes.
    #[error("it is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A component is longer than [`MAX_COMPONENT_LEN`] bytes.
    #[error("a component is longer than {MAX_COMPONENT_LEN} bytes")]
    ComponentTooLong,
}

/// Checks that `path` is a safe relative path: `/`-separated, non-empty components,
/// none of them `.` or `..`, no backslash, no control character, and within the
/// length limits. Any Unicode otherwise is fine, spaces included.
///
/// Such a path, joined to a directory, always names something inside it.
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathProblem::TooLong);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.chars().any(|c| c.is_ascii_control()) {
        return Err(PathProblem::ControlCharacter);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathProblem::EmptyComponent),
            "." => return Err(PathProblem::CurrentComponent),
            ".." => return Err(PathProblem::ParentComponent),
            c if c.len() > MAX_COMPONENT_LEN => return Err(PathProblem::ComponentTooLong),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_pass() {
        for p in [
            "a",
            "dir/sub/file.bin",
            "with space/naïve café.txt",
            "日本語/ファイル",
            "..hidden",
            "a..b/.c",
            "emoji 🚀",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn unsafe_paths_fail_with_the_reason() {
        let long_component = "x".repeat(256);
        let long_path = ["y"; 2049].join("/");
        let cases = [
            ("", PathProblem::Empty),
            ("/etc/passwd", PathProblem::Absolute),
            ("../x", PathProblem::ParentComponent),
            ("a/../../x", PathProblem::ParentComponent),
            ("a/..", PathProblem::ParentComponent),
            ("./a", PathProblem::CurrentComponent),
            ("a//b", PathProblem::EmptyComponent),
            ("a/", PathProblem::EmptyComponent),
            ("..\\x", PathProblem::Backslash),
            ("a\nb", PathProblem::ControlCharacter),
            ("a\0b", PathProblem::ControlCharacter),
            (long_component.as_str(), PathProblem::ComponentTooLong),
            (long_path.as_str(), PathProblem::TooLong),
        ];
        for (p, want) in cases {
            assert_eq!(check_path(p), Err(want), "{p:?}");
        }
    }
}
