//! Output paths: checked before any work starts, and written whole or not at all.
//!
//! A run that computes for an hour and then finds that `--out` cannot be written has wasted the
//! hour; [`check_output_file`] and [`prepare_output_dir`] are called first. A write that fails half
//! way (a full disk) must not leave a truncated file that looks like a result: [`write_atomic`]
//! writes to a hidden sibling and renames it, removing it on failure.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result};

fn cannot(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::data(Location::file(path), format!("cannot write the output here: {why}"))
}

/// The directory a file path lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates and removes a probe file in `dir`, so a read-only directory or file system is found now.
fn probe_writable(dir: &Path, named: &Path) -> Result<()> {
    let probe = dir.join(format!(".protein-lm-write-test-{}", std::process::id()));
    match fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(cannot(named, format_args!("cannot create files in {}: {e}", dir.display()))),
    }
}

/// Checks that `path` can be written as a file: its directory exists and takes new files, and
/// `path` is not a directory. Nothing is created.
pub fn check_output_file(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(cannot(path, "it is a directory, a file name is needed"));
    }
    if is_special(path) {
        return fs::OpenOptions::new().write(true).open(path).map(|_| ()).map_err(|e| cannot(path, e));
    }
    let dir = parent_of(path);
    match fs::metadata(&dir) {
        Err(_) => return Err(cannot(path, format_args!("directory {} does not exist", dir.display()))),
        Ok(m) if !m.is_dir() => return Err(cannot(path, format_args!("{} is not a directory", dir.display()))),
        Ok(_) => {}
    }
    probe_writable(&dir, path)
}

/// Creates the output directory `path` (and its parents) and checks that it takes new files. An
/// existing file at `path`, or at one of its parents, is an error naming `path`.
pub fn prepare_output_dir(path: &Path) -> Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(cannot(path, "a file of that name exists, a directory is needed"));
    }
    fs::create_dir_all(path).map_err(|e| cannot(path, format_args!("cannot create the directory: {e}")))?;
    probe_writable(path, path)
}

/// An existing path that is neither a regular file nor a directory (a device, a pipe).
fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The hidden sibling a file is written to before it is renamed into place.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent_of(path).join(format!(".{name}.partial"))
}

/// Writes `path` through `write` into [`partial_path`] and renames it into place; on any failure
/// the partial file is removed and the error names `path`. Files get the usual permissions (0666
/// less the umask).
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    if is_special(path) {
        // A device or pipe (/dev/stdout, /dev/full) is written in place: renaming a file over it
        // would replace the device.
        let result = fs::OpenOptions::new().write(true).open(path).and_then(|file| {
            let mut w = std::io::BufWriter::new(file);
            write(&mut w)?;
            w.flush()
        });
        return result.map_err(|e| Error::io(path, e));
    }
    let tmp = partial_path(path);
    let result = (|| {
        let file = fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// [`write_atomic`] of a byte string.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_users_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("no/such/dir/out.npy");
        let e = check_output_file(&missing).unwrap_err().to_string();
        assert!(e.contains("out.npy") && e.contains("does not exist"), "{e}");
        let e = check_output_file(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("it is a directory"), "{e}");
        check_output_file(&tmp.path().join("fine.npy")).unwrap();
        assert!(!tmp.path().join("fine.npy").exists());

        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        let e = prepare_output_dir(&file).unwrap_err().to_string();
        assert!(e.contains("a file of that name exists"), "{e}");
        let e = prepare_output_dir(&file.join("sub")).unwrap_err().to_string();
        assert!(e.contains("f/sub") && e.contains("cannot create the directory"), "{e}");
        prepare_output_dir(&tmp.path().join("a/b")).unwrap();
        assert_eq!(fs::read_dir(tmp.path().join("a/b")).unwrap().count(), 0);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out.txt");
        let e = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("out.txt") && e.contains("disk full") && !e.contains("partial"), "{e}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        write_file_atomic(&path, b"whole").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
