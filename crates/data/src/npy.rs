//! NumPy `.npy` reading and writing for float arrays (format versions
//! 1.0–3.0; little- or big-endian f4/f8; C or Fortran order). The header
//! is parsed as the format defines it — a Python dict literal with exactly
//! the keys `descr`, `fortran_order` and `shape` — and the data must be
//! exactly as long as the shape says.
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

/// An array of any rank, in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// One value of the header's dict literal.
#[derive(Debug, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// A tiny reader of the Python literal numpy writes:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct Lit<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Lit<'a> {
    fn ws(&mut self) {
        while self.at < self.s.len() && (self.s[self.at] as char).is_ascii_whitespace() {
            self.at += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.at))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        self.ws();
        let q = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.at)),
        };
        self.at += 1;
        let start = self.at;
        while self.at < self.s.len() && self.s[self.at] != q {
            if self.s[self.at] == b'\\' {
                return Err("escapes are not part of a .npy header".into());
            }
            self.at += 1;
        }
        if self.at >= self.s.len() {
            return Err("unterminated string".into());
        }
        let v = String::from_utf8_lossy(&self.s[start..self.at]).to_string();
        self.at += 1;
        Ok(v)
    }
    fn word(&mut self) -> &'a [u8] {
        self.ws();
        let start = self.at;
        while self.at < self.s.len() && (self.s[self.at] as char).is_ascii_alphanumeric() {
            self.at += 1;
        }
        &self.s[start..self.at]
    }
    fn value(&mut self) -> std::result::Result<Value, String> {
        self.ws();
        match self.s.get(self.at) {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.at += 1;
                let mut dims = vec![];
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    let w = self.word();
                    let w = std::str::from_utf8(w).unwrap_or("");
                    let d: usize = w
                        .parse()
                        .map_err(|_| format!("'{w}' is not a dimension (a whole number)"))?;
                    dims.push(d);
                    if self.eat(b')') {
                        break;
                    }
                    self.expect(b',')?;
                }
                Ok(Value::Tuple(dims))
            }
            _ => match self.word() {
                b"True" => Ok(Value::Bool(true)),
                b"False" => Ok(Value::Bool(false)),
                w => Err(format!(
                    "'{}' is not a header value (a string, True/False or a shape)",
                    String::from_utf8_lossy(w)
                )),
            },
        }
    }
    fn dict(&mut self) -> std::result::Result<Vec<(String, Value)>, String> {
        self.expect(b'{')?;
        let mut out: Vec<(String, Value)> = vec![];
        loop {
            if self.eat(b'}') {
                break;
            }
            let k = self.string()?;
            self.expect(b':')?;
            let v = self.value()?;
            if out.iter().any(|(o, _)| *o == k) {
                return Err(format!("key '{k}' given twice"));
            }
            out.push((k, v));
            if self.eat(b'}') {
                break;
            }
            self.expect(b',')?;
        }
        self.ws();
        if self.at != self.s.len() {
            return Err(format!("text after the dict at byte {}", self.at));
        }
        Ok(out)
    }
}

fn parse_header(path: &Path, text: &str) -> Result<Header> {
    let bad =
        |m: &str| DataError::format(path, format!("bad .npy header ({m}): {}", text.trim_end()));
    let dict = Lit {
        s: text.as_bytes(),
        at: 0,
    }
    .dict()
    .map_err(|m| bad(&m))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in dict {
        match (k.as_str(), v) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(bad(&format!("'{k}' has the wrong type: {v:?}")))
            }
            (other, _) => return Err(bad(&format!("unknown key '{other}'"))),
        }
    }
    Ok(Header {
        descr: descr.ok_or_else(|| bad("no 'descr'"))?,
        fortran: fortran.ok_or_else(|| bad("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| bad("no 'shape'"))?,
    })
}

/// Reads a 2-D float array (a 1-D array reads as one row).
pub fn read_npy(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(path, &bytes)
}

/// Reads a float array of any rank (in C order, whatever its order on disk).
pub fn read_npy_array(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy_array(path, &bytes)
}

pub(crate) fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    let a = parse_npy_array(path, bytes)?;
    let (rows, cols) = match a.shape.as_slice() {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        s => {
            return Err(DataError::format(
                path,
                format!("expected a 2-D array, shape is {s:?}"),
            ))
        }
    };
    Ok(Matrix {
        rows,
        cols,
        data: a.data,
    })
}

pub fn parse_npy_array(path: &Path, bytes: &[u8]) -> Result<Array> {
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
    let shape_txt = h
        .shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let n = h.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let need = n.and_then(|n| n.checked_mul(width)).ok_or_else(|| {
        DataError::format(
            path,
            format!("shape {shape_txt} of {width}-byte values overflows"),
        )
    })?;
    let n = n.unwrap_or(0);
    if body.len() < need {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {shape_txt} needs {need} data bytes, file has {}",
                body.len()
            ),
        ));
    }
    if body.len() > need {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes after the data: {shape_txt} needs {need} data bytes, file has {} (a header that does not describe the data)",
                body.len() - need,
                body.len()
            ),
        ));
    }
    let mut data: Vec<f32> = body
        .chunks_exact(width)
        .map(|c| match (is_f64, big) {
            (false, false) => f32::from_le_bytes(c.try_into().unwrap()),
            (false, true) => f32::from_be_bytes(c.try_into().unwrap()),
            (true, false) => f64::from_le_bytes(c.try_into().unwrap()) as f32,
            (true, true) => f64::from_be_bytes(c.try_into().unwrap()) as f32,
        })
        .collect();
    if h.fortran && h.shape.len() > 1 && n > 0 {
        // Column-major on disk (the first index varies fastest): reorder
        // into row-major.
        let k = h.shape.len();
        let mut t = vec![0f32; n];
        let mut idx = vec![0usize; k];
        let mut c_strides = vec![1usize; k];
        for i in (0..k - 1).rev() {
            c_strides[i] = c_strides[i + 1] * h.shape[i + 1];
        }
        for v in &data {
            let off: usize = idx.iter().zip(&c_strides).map(|(i, s)| i * s).sum();
            t[off] = *v;
            for (d, i) in idx.iter_mut().enumerate() {
                *i += 1;
                if *i < h.shape[d] {
                    break;
                }
                *i = 0;
            }
        }
        data = t;
    }
    Ok(Array {
        shape: h.shape,
        data,
    })
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

    fn npy(header: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let h = format!("{header}\n");
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h.as_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn the_header_is_parsed_as_the_format_defines_it() {
        let p = Path::new("h.npy");
        let body: Vec<u8> = [1f32, 2., 3., 4.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // Accepted spellings: double quotes, no trailing comma, spaces.
        for h in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
            "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,2)}",
            "{ 'shape' : ( 2 , 2 ) , 'fortran_order' : False , 'descr' : '<f4' }   ",
        ] {
            let m = parse_npy(p, &npy(h, &body)).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!((m.rows, m.cols), (2, 2));
        }
        // Refused, each naming the file: a prefix of True is not True; keys
        // missing, repeated, unknown or of the wrong type; text after it.
        for (h, why) in [
            (
                "{'descr': '<f4', 'fortran_order': Truest, 'shape': (2, 2), }",
                "Truest",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 1, 'shape': (2, 2), }",
                "not a header value",
            ),
            ("{'descr': '<f4', 'shape': (2, 2), }", "no 'fortran_order'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 'y'}",
                "unknown key",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}",
                "twice",
            ),
            (
                "{'descr': False, 'fortran_order': False, 'shape': (2, 2)}",
                "wrong type",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2)}",
                "not a dimension",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)} extra",
                "text after",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)",
                "expected",
            ),
        ] {
            let e = parse_npy(p, &npy(h, &body)).unwrap_err().to_string();
            assert!(e.contains("h.npy") && e.contains(why), "{h}: {e}");
        }
    }

    #[test]
    fn the_data_must_be_exactly_as_long_as_the_shape_says() {
        let p = Path::new("x.npy");
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }";
        let body: Vec<u8> = [1f32, 2., 3., 4.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let e = parse_npy(p, &npy(h, &body)).unwrap_err().to_string();
        assert!(
            e.contains("x.npy") && e.contains("4 bytes after the data"),
            "{e}"
        );
        assert!(parse_npy(p, &npy(h, &body[..12])).is_ok());
    }

    #[test]
    fn arrays_of_any_rank_read_in_c_order() {
        let p = Path::new("a.npy");
        // A 2×3×2 array 0..12 in C order, and the same array in Fortran order.
        let c: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut f = vec![0f32; 12];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..2 {
                    f[i + 2 * j + 6 * k] = c[i * 6 + j * 2 + k];
                }
            }
        }
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let a = parse_npy_array(
            p,
            &npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2), }",
                &bytes(&c),
            ),
        )
        .unwrap();
        assert_eq!(a.shape, vec![2, 3, 2]);
        assert_eq!(a.data, c);
        let b = parse_npy_array(
            p,
            &npy(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 2), }",
                &bytes(&f),
            ),
        )
        .unwrap();
        assert_eq!(b.data, c);
        // A 3-D array is not a matrix.
        let e = parse_npy(
            p,
            &npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2), }",
                &bytes(&c),
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("2-D"), "{e}");
        // A scalar (shape ()) has one value.
        let s = parse_npy_array(
            p,
            &npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                &bytes(&[7.0]),
            ),
        )
        .unwrap();
        assert_eq!((s.shape.len(), s.data.clone()), (0, vec![7.0]));
    }
}
