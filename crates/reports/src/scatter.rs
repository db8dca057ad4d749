//! A 2-D scatter plot of points coloured by class, with a legend, drawn by
//! plotters (fonts embedded: DejaVu Sans), saved as PNG.
use crate::{write_png, ReportError, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

pub(crate) fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws the legend (upper right) and flushes the drawing.
pub(crate) fn legend_and_present<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    legend_at_and_present(chart, root, SeriesLabelPosition::UpperRight)
}

/// Draws the legend at `position` and flushes the drawing.
pub(crate) fn legend_at_and_present<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()?;
    root.present()
}

/// Ten well-separated colours (Tableau 10), cycled for more classes.
pub(crate) const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// Class `c` of `n`: the ten Tableau colours up to ten classes; beyond,
/// a hue wheel in class order (so an ordered factor — an angle, a shift —
/// reads as a gradient, and a circular one closes on itself; ten cycled
/// colours would give an angle and its opposite the same colour).
fn colour_of(c: usize, n: usize) -> (u8, u8, u8) {
    if n <= PALETTE.len() {
        return PALETTE[c];
    }
    let h = 6.0 * c as f64 / n as f64;
    let x = 1.0 - ((h % 2.0) - 1.0).abs();
    let (r, g, b) = match h as usize {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    // 85% value: bright but legible on white.
    let v = |t: f64| (t * 0.85 * 255.0).round() as u8;
    (v(r), v(g), v(b))
}

/// Draws `points` coloured by `labels` (indices into `class_names`).
pub fn save_scatter(
    path: &Path,
    points: &[[f32; 2]],
    labels: &[u8],
    class_names: &[String],
    title: &str,
) -> Result<()> {
    if points.len() != labels.len() || points.is_empty() {
        return Err(ReportError::Invalid(format!(
            "{} points with {} labels",
            points.len(),
            labels.len()
        )));
    }
    register_font();
    let (w, h) = (900u32, 720u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err =
        |e: &dyn std::fmt::Display| ReportError::Draw(path.display().to_string(), e.to_string());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in points {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            y0 = y0.min(p[1]);
            y1 = y1.max(p[1]);
        }
        let mx = (x1 - x0).max(1e-6) * 0.05;
        let my = (y1 - y0).max(1e-6) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d((x0 - mx)..(x1 + mx), (y0 - my)..(y1 + my))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        let n_classes = class_names
            .len()
            .max(1 + *labels.iter().max().unwrap_or(&0) as usize);
        for c in 0..n_classes {
            let (r, g, b) = colour_of(c, n_classes);
            let colour = RGBColor(r, g, b);
            let pts: Vec<(f32, f32)> = points
                .iter()
                .zip(labels)
                .filter(|(_, &l)| l as usize == c)
                .map(|(p, _)| (p[0], p[1]))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let name = class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            chart
                .draw_series(
                    pts.into_iter()
                        .map(|p| Circle::new(p, 2, colour.mix(0.7).filled())),
                )
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
        }
        legend_and_present(&mut chart, &root).map_err(|e| err(&e))?;
    }
    write_png(path, &buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_class_in_its_colour() {
        let pts: Vec<[f32; 2]> = (0..40)
            .map(|i| [(i % 2) as f32 * 10.0, (i / 2) as f32])
            .collect();
        let labels: Vec<u8> = (0..40).map(|i| (i % 2) as u8).collect();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("map.png");
        save_scatter(&p, &pts, &labels, &["left".into(), "right".into()], "test").unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 720));
        let near = |c: (u8, u8, u8)| {
            img.pixels()
                .filter(|p| {
                    (p[0] as i32 - c.0 as i32).abs() < 40
                        && (p[1] as i32 - c.1 as i32).abs() < 40
                        && (p[2] as i32 - c.2 as i32).abs() < 40
                })
                .count()
        };
        assert!(near(PALETTE[0]) > 50 && near(PALETTE[1]) > 50);
        // Text was drawn (dark pixels beyond the axes alone).
        let dark = img
            .pixels()
            .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
            .count();
        assert!(dark > 500, "{dark}");
        assert!(save_scatter(&p, &pts, &labels[..3], &[], "x").is_err());
    }
}
