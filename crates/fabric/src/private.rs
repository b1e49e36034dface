//! Files and directories only this user may read: keys, tokens, data dirs
//! and anything else that can hold a secret. A file is created with its
//! final mode (`OpenOptions::mode`), never written first and `chmod`ed
//! after, and written through a temporary file and a rename, so no reader
//! ever sees it partial or readable by others; every failure is reported.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// The mode of private directories.
pub const DIR_MODE: u32 = 0o700;

/// Writes `bytes` to `path` (mode 0600) through a synced temporary file
/// in the same directory and a rename.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` and its missing parents with mode 0700, and takes the
/// group's and others' access away from an existing `path` (an owner's own
/// stricter mode is left alone).
pub fn dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_dirs_are_born_private() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("a/b");
        dir(&d).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        // An existing, open directory is closed down.
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        // A file replaces an open one, private.
        let f = d.join("key");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&f, b"secret").unwrap();
        // A stricter mode of the owner's own is kept.
        let strict = root.path().join("strict");
        std::fs::create_dir(&strict).unwrap();
        std::fs::set_permissions(&strict, std::fs::Permissions::from_mode(0o500)).unwrap();
        dir(&strict).unwrap();
        assert_eq!(mode(&strict), 0o500);
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
        assert_eq!(mode(&f), 0o600);
        assert!(!d.join("key.tmp").exists());
        // Errors are reported.
        assert!(write(&root.path().join("missing/key"), b"x").is_err());
    }
}
