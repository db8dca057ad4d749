//! Rates with confidence intervals, one row per group and one colour per
//! series (e.g. P@1 of the test words by kind, NN and CSLS): a horizontal
//! dot-and-whisker chart drawn by plotters, saved as PNG.
use crate::scatter::{legend_at_and_present, register_font, PALETTE};
use crate::{write_png, ReportError, Result};
use plotters::prelude::*;
use std::path::Path;

/// One group's rate (in %) and its interval, for each series.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// The row's label (e.g. `frequency: rank 0–1k (312)`).
    pub label: String,
    /// `(rate, low, high)` per series, in %; `None` where a series has no value.
    pub values: Vec<Option<(f64, f64, f64)>>,
}

/// Draws `rows` (top to bottom) with one dot and whisker per series.
pub fn save_intervals(
    path: &Path,
    title: &str,
    series: &[String],
    rows: &[IntervalRow],
) -> Result<()> {
    if rows.is_empty() || series.is_empty() {
        return Err(ReportError::Invalid(format!(
            "an interval chart needs rows and series ({} rows, {} series)",
            rows.len(),
            series.len()
        )));
    }
    if let Some(r) = rows.iter().find(|r| r.values.len() != series.len()) {
        return Err(ReportError::Invalid(format!(
            "row '{}' has {} values for {} series",
            r.label,
            r.values.len(),
            series.len()
        )));
    }
    register_font();
    let n = rows.len();
    let label_px = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, 48) as u32
        * 8
        + 16;
    let (w, h) = (560 + label_px, 110 + 26 * n as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err =
        |e: &dyn std::fmt::Display| ReportError::Draw(path.display().to_string(), e.to_string());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .margin_right(28)
            .x_label_area_size(36)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0f64..100f64, -0.5f64..(n as f64 - 0.5))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                // Row 0 is drawn at the top.
                let i = (n as f64 - 1.0 - y).round();
                if (y - y.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_desc("P@1 % (95% interval)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        let k = series.len();
        for (s, name) in series.iter().enumerate() {
            let (r, g, b) = PALETTE[s % PALETTE.len()];
            let colour = RGBColor(r, g, b);
            // Series side by side within a row.
            let off = if k == 1 {
                0.0
            } else {
                0.3 * (s as f64 / (k - 1) as f64 - 0.5)
            };
            let pts: Vec<(f64, f64, f64, f64)> = rows
                .iter()
                .enumerate()
                .filter_map(|(i, row)| {
                    row.values[s].map(|(v, lo, hi)| (n as f64 - 1.0 - i as f64 - off, v, lo, hi))
                })
                .collect();
            chart
                .draw_series(pts.iter().map(|&(y, _, lo, hi)| {
                    PathElement::new(vec![(lo, y), (hi, y)], colour.stroke_width(2))
                }))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(y, v, _, _)| Circle::new((v, y), 4, colour.filled())),
                )
                .map_err(|e| err(&e))?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
        }
        legend_at_and_present(&mut chart, &root, SeriesLabelPosition::LowerRight)
            .map_err(|e| err(&e))?;
    }
    write_png(path, &buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_where_its_values_are() {
        let rows = vec![
            IntervalRow {
                label: "low".into(),
                values: vec![Some((10.0, 5.0, 15.0)), None],
            },
            IntervalRow {
                label: "high".into(),
                values: vec![Some((90.0, 85.0, 95.0)), Some((80.0, 70.0, 88.0))],
            },
        ];
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("which.png");
        save_intervals(&p, "test", &["NN".into(), "CSLS".into()], &rows).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        assert_eq!(h, 110 + 2 * 26);
        // Pixels of a colour in the left or right half of the plot.
        let count = |c: (u8, u8, u8), right: bool| {
            img.enumerate_pixels()
                .filter(|(x, _, p)| {
                    (*x > w / 2) == right
                        && (p[0] as i32 - c.0 as i32).abs() < 30
                        && (p[1] as i32 - c.1 as i32).abs() < 30
                        && (p[2] as i32 - c.2 as i32).abs() < 30
                })
                .count()
        };
        // Series 0 has a point at 10% (left) and at 90% (right); series 1
        // only at 80% (right).
        assert!(count(PALETTE[0], false) > 20 && count(PALETTE[0], true) > 20);
        assert!(count(PALETTE[1], true) > 20);
        assert!(
            count(PALETTE[1], false) < 20,
            "{}",
            count(PALETTE[1], false)
        );
        let bad = [IntervalRow {
            label: "x".into(),
            values: vec![None],
        }];
        assert!(save_intervals(&p, "t", &["a".into(), "b".into()], &bad).is_err());
        assert!(save_intervals(&p, "t", &["a".into()], &[]).is_err());
    }
}
