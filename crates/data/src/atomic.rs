//! Atomic file writes: write to a temporary file beside the target, fsync,
//! then rename over it, so a crash never leaves a half-written file behind.
use crate::error::{DataError, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Writes `path` atomically with the bytes produced by `fill`.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// Writes a JSON value atomically (pretty-printed, with a final newline).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| DataError::format(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, |w| {
        w.write_all(text.as_bytes())?;
        w.write_all(b"\n")
    })
}

/// Writes named tensors (moved to the CPU) as safetensors, through a
/// temporary file renamed into place: a crash never leaves a torn checkpoint.
pub fn write_safetensors_atomic(path: &Path, named: Vec<(String, tch::Tensor)>) -> Result<()> {
    let tmp = path.with_extension(format!("safetensors.{}.tmp", std::process::id()));
    let named: Vec<(String, tch::Tensor)> = named
        .into_iter()
        .map(|(n, t)| (n, t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    if let Err(e) = tch::Tensor::write_safetensors(&named, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::format(
            path,
            format!("cannot write safetensors: {e}"),
        ));
    }
    let res = std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// Reads a safetensors file, naming the file when it is not one.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, tch::Tensor)>> {
    if !path.is_file() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    tch::Tensor::read_safetensors(path)
        .map_err(|e| DataError::format(path, format!("not a readable safetensors file: {e}")))
}
