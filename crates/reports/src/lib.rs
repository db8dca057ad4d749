//! embedlab reports: PNG image grids, 2-D maps of codes (PCA, t-SNE) and
//! training curves rendered with plotters, and the self-contained HTML
//! report of any set of run folders. Every file is written atomically.
pub mod grid;
pub mod html;
pub mod intervals;
pub mod plot;
pub mod projection;
pub mod scatter;

/// Errors of the reports layer.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Data(#[from] embedlab_data::DataError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot draw {0}: {1}")]
    Draw(String, String),
}

pub type Result<T> = std::result::Result<T, ReportError>;

/// Encodes an RGB buffer as PNG bytes.
pub(crate) fn encode_png(what: &str, rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| ReportError::Draw(what.to_string(), e.to_string()))?;
    Ok(bytes)
}

/// Encodes an RGB buffer as PNG and writes it atomically.
pub(crate) fn write_png(path: &std::path::Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    let bytes = encode_png(&path.display().to_string(), rgb, width, height)?;
    embedlab_data::atomic::write_atomic(path, |w| std::io::Write::write_all(w, &bytes))?;
    Ok(())
}

use image::ImageEncoder;
