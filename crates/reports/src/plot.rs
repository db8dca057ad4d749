//! Line charts (training curves) drawn by plotters, as PNG bytes.
use crate::scatter::{legend_and_present, register_font, PALETTE};
use crate::{encode_png, ReportError, Result};
use plotters::prelude::*;

/// A named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws the series on shared axes, with a legend naming each; returns a
/// PNG. The x axis (epochs, iterations) is labelled with whole numbers only.
pub fn line_chart_png(
    series: &[Series],
    title: &str,
    x_label: &str,
    y_label: &str,
) -> Result<Vec<u8>> {
    let pts: Vec<&(f64, f64)> = series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(ReportError::Invalid(format!("{title}: nothing to plot")));
    }
    register_font();
    let (w, h) = (720u32, 400u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let err = |e: &dyn std::fmt::Display| ReportError::Draw(title.to_string(), e.to_string());
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &pts {
            x0 = x0.min(p.0);
            x1 = x1.max(p.0);
            y0 = y0.min(p.1);
            y1 = y1.max(p.1);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let my = ((y1 - y0) * 0.05).max(1e-9);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, (y0 - my)..(y1 + my))
            .map_err(|e| err(&e))?;
        // Ticks a whole number apart at least, so that they fall on whole
        // numbers; labels of whole numbers only.
        let span = (x1 - x0).round().max(1.0) as usize;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(span.clamp(1, 10) + 1)
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-6 {
                    format!("{:.0}", v)
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in series.iter().enumerate() {
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            let colour = RGBColor(r, g, b);
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            // Past the palette's ten colours, the marker tells series of
            // one colour apart: dots, then rings, then wide rings.
            let (radius, style) = match (i / PALETTE.len()) % 3 {
                0 => (3, colour.filled()),
                1 => (4, colour.stroke_width(1)),
                _ => (6, colour.stroke_width(2)),
            };
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (18, 0)], colour.stroke_width(2))
                        + Circle::new((9, 0), radius, style)
                });
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, radius, style)))
                .map_err(|e| err(&e))?;
        }
        legend_and_present(&mut chart, &root).map_err(|e| err(&e))?;
    }
    encode_png(title, &buf, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_both_series() {
        let s = vec![
            Series {
                name: "train".into(),
                points: (1..=5).map(|e| (e as f64, 100.0 / e as f64)).collect(),
            },
            Series {
                name: "valid".into(),
                points: (1..=5).map(|e| (e as f64, 110.0 / e as f64)).collect(),
            },
        ];
        let png = line_chart_png(&s, "loss", "epoch", "nats").unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (720, 400));
        let count = |c: (u8, u8, u8)| {
            img.pixels()
                .filter(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2)
                .count()
        };
        assert!(count(PALETTE[0]) > 100 && count(PALETTE[1]) > 100);
        assert!(line_chart_png(&[], "empty", "x", "y").is_err());
    }
}
