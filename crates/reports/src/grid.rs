//! Image grids: a batch of images (n × c × h × w, values in [0, 1]) laid
//! out in rows, scaled up by an integer factor, with a grey gutter.
use crate::{write_png, ReportError, Result};
use std::path::Path;
use tch::{Kind, Tensor};

pub struct GridStyle {
    pub columns: i64,
    pub scale: u32,
    pub pad: u32,
}

impl Default for GridStyle {
    fn default() -> Self {
        Self {
            columns: 10,
            scale: 2,
            pad: 2,
        }
    }
}

/// Renders the grid into an RGB buffer; returns (pixels, width, height).
pub fn render_grid(images: &Tensor, style: &GridStyle) -> Result<(Vec<u8>, u32, u32)> {
    let s = images.size();
    let (n, c, h, w) = match s.as_slice() {
        [n, c, h, w] if *c == 1 || *c == 3 => (*n, *c, *h, *w),
        [n, h, w] => (*n, 1, *h, *w),
        _ => {
            return Err(ReportError::Invalid(format!(
                "an image grid needs n × c × h × w with 1 or 3 channels, got {s:?}"
            )))
        }
    };
    if n == 0 {
        return Err(ReportError::Invalid("no images to draw".into()));
    }
    let cols = style.columns.clamp(1, n);
    let rows = (n + cols - 1) / cols;
    let sc = style.scale.max(1) as i64;
    let pad = style.pad as i64;
    let cw = w * sc;
    let ch = h * sc;
    let width = cols * cw + (cols + 1) * pad;
    let height = rows * ch + (rows + 1) * pad;
    let px: Vec<u8> = Vec::try_from(
        &(images
            .reshape([n, c, h, w])
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .clamp(0.0, 1.0)
            * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .contiguous()
            .flatten(0, -1),
    )
    .map_err(|e: tch::TchError| ReportError::Invalid(e.to_string()))?;
    let mut out = vec![128u8; (width * height * 3) as usize];
    for i in 0..n {
        let (r, col) = (i / cols, i % cols);
        let x0 = pad + col * (cw + pad);
        let y0 = pad + r * (ch + pad);
        for y in 0..ch {
            for x in 0..cw {
                let (sy, sx) = (y / sc, x / sc);
                let o = (((y0 + y) * width + x0 + x) * 3) as usize;
                for k in 0..3 {
                    let ch_i = if c == 3 { k } else { 0 };
                    out[o + k as usize] = px[(((i * c + ch_i) * h + sy) * w + sx) as usize];
                }
            }
        }
    }
    Ok((out, width as u32, height as u32))
}

/// Writes the grid as a PNG file (atomically).
pub fn save_grid(path: &Path, images: &Tensor, style: &GridStyle) -> Result<()> {
    let (rgb, w, h) = render_grid(images, style)?;
    write_png(path, &rgb, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip_through_png() {
        // Three 2×2 grey images: values 0, 0.5, 1; two columns, scale 1, pad 1.
        let imgs = Tensor::from_slice(&[0.0f32, 0.5, 1.0])
            .reshape([3, 1, 1, 1])
            .expand([3, 1, 2, 2], false);
        let st = GridStyle {
            columns: 2,
            scale: 1,
            pad: 1,
        };
        let (rgb, w, h) = render_grid(&imgs, &st).unwrap();
        assert_eq!((w, h), (2 * 2 + 3, 2 * 2 + 3));
        let at = |x: u32, y: u32| rgb[((y * w + x) * 3) as usize];
        assert_eq!(at(0, 0), 128); // gutter
        assert_eq!(at(1, 1), 0); // first image
        assert_eq!(at(4, 2), 128); // second image: round(127.5) = 128
        assert_eq!(at(1, 4), 255); // third image, second row
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.png");
        save_grid(&p, &imgs, &st).unwrap();
        let back = image::open(&p).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (w, h));
        assert_eq!(back.into_raw(), rgb);
        let e =
            render_grid(&Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu)), &st).unwrap_err();
        assert!(e.to_string().contains("n × c × h × w"));
    }
}
