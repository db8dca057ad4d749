//! NumPy `.npy` reading and writing for 2-D float arrays (format versions
//! 1.0–3.0; little- or big-endian f4/f8; C or Fortran order).
use crate::atomic::write_atomic;
use crate::error::{DataError, Result};
use std::io::Write;
use std::path::Path;

/// A dense row-major f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

fn parse_header(path: &Path, text: &str) -> Result<Header> {
    let bad = |m: &str| DataError::format(path, format!("bad .npy header ({m}): {text}"));
    let field = |key: &str| -> Result<&str> {
        let pat = format!("'{key}':");
        let at = text.find(&pat).ok_or_else(|| bad(&format!("no '{key}'")))?;
        Ok(text[at + pat.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("descr"))?
        .to_string();
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_txt = field("shape")?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("shape"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("shape")))
        .collect::<Result<Vec<_>>>()?;
    Ok(Header {
        descr,
        fortran,
        shape,
    })
}

/// Reads a 2-D float array (a 1-D array reads as one row).
pub fn read_npy(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(path, &bytes)
}

pub(crate) fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(DataError::format(
            path,
            "not a .npy file (magic bytes missing)",
        ));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(DataError::format(path, "truncated .npy header"));
            }
            (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => {
            return Err(DataError::format(
                path,
                format!("unsupported .npy version {v}"),
            ))
        }
    };
    if bytes.len() - start < hlen {
        return Err(DataError::format(path, "truncated .npy header"));
    }
    let text = String::from_utf8_lossy(&bytes[start..start + hlen]).to_string();
    let h = parse_header(path, &text)?;
    let (rows, cols) = match h.shape.as_slice() {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        s => {
            return Err(DataError::format(
                path,
                format!("expected a 2-D array, shape is {s:?}"),
            ))
        }
    };
    let (width, big, is_f64) = match h.descr.as_str() {
        "<f4" | "=f4" | "|f4" => (4, false, false),
        ">f4" => (4, true, false),
        "<f8" | "=f8" | "|f8" => (8, false, true),
        ">f8" => (8, true, true),
        d => {
            return Err(DataError::format(
                path,
                format!("unsupported dtype {d} (want f4 or f8)"),
            ))
        }
    };
    // Sizes are checked against the file before anything is allocated: a
    // header whose shape multiplies past the file (or past usize) is refused.
    let body = &bytes[start + hlen..];
    let need = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| {
            DataError::format(
                path,
                format!("shape {rows}x{cols} of {width}-byte values overflows"),
            )
        })?;
    let n = rows * cols;
    if body.len() < need {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {rows}x{cols} needs {need} data bytes, file has {}",
                body.len()
            ),
        ));
    }
    let mut data: Vec<f32> = body[..need]
        .chunks_exact(width)
        .map(|c| match (is_f64, big) {
            (false, false) => f32::from_le_bytes(c.try_into().unwrap()),
            (false, true) => f32::from_be_bytes(c.try_into().unwrap()),
            (true, false) => f64::from_le_bytes(c.try_into().unwrap()) as f32,
            (true, true) => f64::from_be_bytes(c.try_into().unwrap()) as f32,
        })
        .collect();
    if h.fortran && rows > 1 {
        // Column-major on disk: transpose into row-major.
        let mut t = vec![0f32; n];
        for c in 0..cols {
            let col = &data[c * rows..(c + 1) * rows];
            for (r, v) in col.iter().enumerate() {
                t[r * cols + c] = *v;
            }
        }
        data = t;
    }
    Ok(Matrix { rows, cols, data })
}

/// Writes a row-major f32 matrix as `.npy` version 1.0, atomically.
pub fn write_npy(path: &Path, m: &Matrix) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        m.rows, m.cols
    );
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    write_atomic(path, |w: &mut dyn Write| {
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for v in &m.data {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let m = Matrix {
            rows: 2,
            cols: 3,
            data: vec![1., 2., 3., 4., 5., 6.],
        };
        write_npy(&p, &m).unwrap();
        assert_eq!(read_npy(&p).unwrap(), m);

        // The same matrix stored column-major, as f8.
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }\n";
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h.as_bytes());
        for v in [1f64, 4., 2., 5., 3., 6.] {
            bytes.extend(v.to_le_bytes());
        }
        assert_eq!(parse_npy(&p, &bytes).unwrap(), m);
    }

    #[test]
    fn a_shape_that_overflows_or_outgrows_the_file_is_refused() {
        let p = Path::new("big.npy");
        for shape in [
            "(4611686018427387904, 4)",
            "(18446744073709551615, 18446744073709551615)",
            "(1000000, 1000000)",
        ] {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            bytes.extend((h.len() as u16).to_le_bytes());
            bytes.extend(h.as_bytes());
            bytes.extend([0u8; 64]);
            let e = parse_npy(p, &bytes).unwrap_err().to_string();
            assert!(
                e.contains("big.npy") && (e.contains("overflows") || e.contains("truncated")),
                "{e}"
            );
        }
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        let m = Matrix {
            rows: 4,
            cols: 4,
            data: vec![0.5; 16],
        };
        write_npy(&p, &m).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("not a .npy"));
    }
}
