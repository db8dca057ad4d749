//! Range-checked parsers for numeric options: every number the command
//! line takes is checked where it is parsed, and the error names the
//! option (clap adds it) and the range allowed. Upper bounds keep what an
//! option drives (memory, time) within what a run can do.
/// Parses a whole number in `lo..=hi`; anything else — a negative number
/// for a count, 1e300, 2.5, a word — is refused with the range.
fn whole(s: &str, lo: i128, hi: i128) -> Result<i128, String> {
    let t = s.trim();
    let range = format!("give a whole number in {lo}..={hi}");
    match t.parse::<i128>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range: {range}")),
        Err(_) => match t.parse::<f64>() {
            Ok(v) if v.is_finite() && v.fract() == 0.0 => {
                Err(format!("{t} is out of range: {range}"))
            }
            Ok(_) => Err(format!("'{t}' is not a whole number: {range}")),
            Err(_) => Err(format!("'{t}' is not a number: {range}")),
        },
    }
}

/// A whole number of `usize` in `lo..=hi`.
pub fn count(
    lo: u64,
    hi: u64,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| whole(s, lo as i128, hi as i128).map(|v| v as usize)
}

/// A whole number of `i64` in `lo..=hi`.
pub fn int(
    lo: i64,
    hi: i64,
) -> impl Fn(&str) -> Result<i64, String> + Clone + Send + Sync + 'static {
    move |s: &str| whole(s, lo as i128, hi as i128).map(|v| v as i64)
}

/// A whole number in [-`max`, `max`] other than 0 (a shift that moves).
pub fn nonzero_int(
    max: i64,
) -> impl Fn(&str) -> Result<i64, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        match whole(s, -(max as i128), max as i128)? {
        0 => Err("0 is not a shift (the unshifted image is always used); give whole numbers other than 0".into()),
        v => Ok(v as i64),
    }
    }
}

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{s} is not a finite number"));
    }
    Ok(v)
}

/// A learning rate: in (0, 10].
pub fn rate(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 && v <= 10.0 {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: a learning rate is in (0, 10]"
        ))
    }
}

/// A probability or fraction: in (0, 1].
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: give a number in (0, 1]"))
    }
}

/// A number in [0, 1).
pub fn below_one(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: give a number in [0, 1)"))
    }
}

/// A number in (0, 1).
pub fn open_unit(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: give a number in (0, 1)"))
    }
}

/// A number in [0, 0.5).
pub fn below_half(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..0.5).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: give a number in [0, 0.5)"))
    }
}

/// A weight or a span in epochs: in [0, 1e6].
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..=1e6).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: give a number in [0, 1000000]"
        ))
    }
}

/// A convergence tolerance: in [1e-12, 1]. Below about 1e-7 a float32
/// iteration cannot get (its values change by a rounding step), and below
/// 1e-12 not a float64 one either: such a tolerance is never met and every
/// inverse would run to its iteration cap.
pub fn tolerance(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (1e-12..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: give a tolerance in [1e-12, 1] (a smaller one is never reached, in float32 below about 1e-7)"
        ))
    }
}

/// A positive number up to 1e6 (a clipping norm).
pub fn positive(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 && v <= 1e6 {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: give a number in (0, 1000000]"
        ))
    }
}

/// A sampling temperature: in [0, 10] (0: the prior's mode).
pub fn temperature(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (0.0..=10.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: give a temperature in [0, 10]"
        ))
    }
}

/// A traversal span in standard deviations: in (0, 100].
pub fn span(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: give a number in (0, 100]"))
    }
}

/// A budget multiple: in [1, 1e6].
pub fn scale(s: &str) -> Result<f64, String> {
    let v = number(s)?;
    if (1.0..=1e6).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range: give a number in [1, 1000000]"
        ))
    }
}

/// An image size: `N` (N × N) or `HxW`, each side 1 to the data layer's
/// largest (4096).
pub fn image_size(s: &str) -> Result<(usize, usize), String> {
    use embedlab_data::images::MAX_SIDE;
    let side = |t: &str| -> Result<usize, String> {
        match t.trim().parse::<usize>() {
            Ok(v) if (1..=MAX_SIDE).contains(&v) => Ok(v),
            _ => Err(format!(
                "{s:?} is not an image size: give N or HxW (e.g. 32 or 28x28), each side 1 to {MAX_SIDE}"
            )),
        }
    };
    match s.split_once(['x', 'X', '×']) {
        Some((h, w)) => Ok((side(h)?, side(w)?)),
        None => side(s).map(|v| (v, v)),
    }
}

/// `--precision`: the number format of products — word translation's
/// searches and maps, the image families' training steps.
#[derive(
    clap::ValueEnum, Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq,
)]
#[serde(rename_all = "kebab-case")]
pub enum PrecisionArg {
    /// bf16 on CUDA or CPUs with AVX512-BF16/AMX, else f32.
    Auto,
    F32,
    Bf16,
}

/// The default of the options that are float32 unless asked (an exact
/// search, the image families' training steps), and of run folders made
/// before them.
pub fn f32_precision() -> PrecisionArg {
    PrecisionArg::F32
}

impl PrecisionArg {
    pub fn resolve(self, device: tch::Device) -> embedlab_train::Precision {
        match self {
            PrecisionArg::Auto => embedlab_train::Precision::fastest(device),
            PrecisionArg::F32 => embedlab_train::Precision::F32,
            PrecisionArg::Bf16 => embedlab_train::Precision::Bf16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_refuse_what_is_out_of_range_and_say_the_range() {
        for bad in ["0", "-1", "NaN", "inf", "1e300", "x"] {
            assert!(rate(bad).is_err(), "rate {bad}");
            assert!(positive(bad).is_err(), "positive {bad}");
        }
        assert_eq!(rate("1e-3"), Ok(1e-3));
        assert!(fraction("1.5").unwrap_err().contains("(0, 1]"));
        assert_eq!(below_one("0"), Ok(0.0));
        assert!(below_half("0.5").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(span("NaN").unwrap_err().contains("not a finite number"));
    }

    #[test]
    fn image_sizes_are_n_or_h_by_w() {
        assert_eq!(image_size("32"), Ok((32, 32)));
        assert_eq!(image_size("28x24"), Ok((28, 24)));
        assert_eq!(image_size("64×48"), Ok((64, 48)));
        for bad in ["0", "-1", "x", "3x", "4097", "nan", "1e3", "2x0"] {
            assert!(image_size(bad).is_err(), "{bad}");
        }
    }
}
