//! Fingerprints of input files, so that a run folder knows exactly what it
//! was made from: the absolute path, the size and a BLAKE3 hash of the
//! content (of every file, for a folder). A run used again (resumed,
//! evaluated, translated with) checks that its inputs are still the same,
//! and refuses, naming the file, when they changed.
use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Absolute path (as given, made absolute; links are not resolved).
    pub path: PathBuf,
    /// Total size in bytes (of every file, for a folder).
    pub bytes: u64,
    /// BLAKE3 of the content (for a folder: of each file's name and content, in name order).
    pub blake3: String,
}

/// An absolute form of `p` (relative paths are taken from the current folder).
pub fn absolute(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        return p.to_path_buf();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn hash_file(path: &Path, h: &mut blake3::Hasher) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok(total)
}

/// The files of a folder (and of its subfolders, two levels down), in name order.
fn files_of(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if depth > 0 {
                files_of(&p, depth - 1, out)?;
            }
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The fingerprint of a file or folder.
pub fn fingerprint(path: &Path) -> Result<Fingerprint> {
    let abs = absolute(path);
    let mut h = blake3::Hasher::new();
    let bytes = if abs.is_dir() {
        let mut files = vec![];
        files_of(&abs, 2, &mut files)?;
        let mut total = 0;
        for f in files {
            let rel = f.strip_prefix(&abs).unwrap_or(&f);
            h.update(rel.to_string_lossy().as_bytes());
            h.update(&[0]);
            total += hash_file(&f, &mut h)?;
        }
        total
    } else {
        hash_file(&abs, &mut h)?
    };
    Ok(Fingerprint {
        path: abs,
        bytes,
        blake3: h.finalize().to_hex().to_string(),
    })
}

impl Fingerprint {
    /// Checks that the file or folder is still what it was.
    pub fn check(&self) -> Result<()> {
        let now = fingerprint(&self.path).map_err(|e| {
            DataError::format(
                &self.path,
                format!("an input of this run is no longer readable ({e})"),
            )
        })?;
        if now != *self {
            return Err(DataError::format(
                &self.path,
                format!(
                    "changed since the run was made ({} bytes, BLAKE3 {}…; the run used {} bytes, {}…): results computed with it would not belong to this run",
                    now.bytes,
                    &now.blake3[..12],
                    self.bytes,
                    &self.blake3[..12]
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_or_folder_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.vec");
        std::fs::write(&f, "1 2\na 1 2\n").unwrap();
        let fp = fingerprint(&f).unwrap();
        assert!(fp.path.is_absolute() && fp.bytes == 10);
        fp.check().unwrap();
        std::fs::write(&f, "1 2\na 1 3\n").unwrap();
        let e = fp.check().unwrap_err().to_string();
        assert!(
            e.contains("a.vec") && e.contains("changed since the run was made"),
            "{e}"
        );
        let dir = d.path().join("vocab");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("vectors"), [1u8, 2, 3]).unwrap();
        let fp = fingerprint(&dir).unwrap();
        std::fs::write(dir.join("key2row"), [0u8]).unwrap();
        assert!(fp.check().is_err(), "a file added to the folder");
        std::fs::remove_file(dir.join("vectors")).unwrap();
        std::fs::remove_file(dir.join("key2row")).unwrap();
        assert!(fp.check().is_err());
    }
}
