//! The training curve as a PNG: mean loss per epoch (left) and validation NDCG@10 (right).
//!
//! The text is drawn with DejaVu Sans compiled into the binary (plotters' `ab_glyph` backend), so
//! the binary needs no fontconfig or freetype and draws the same labels on any machine.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::run_dir::EpochRecord;

/// DejaVu Sans (licence: `resources/fonts/LICENSE-DejaVu.txt`).
static SANS: &[u8] = include_bytes!("../../resources/fonts/DejaVuSans.ttf");

/// Why the curve could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The compiled-in font did not parse (a broken build, not a user error).
    #[error("the built-in font DejaVu Sans cannot be read")]
    Font,
    /// plotters failed to draw or to write the PNG.
    #[error("cannot draw {path}: {message}")]
    Draw { path: String, message: String },
}

/// Draws `records` into `path`.
pub fn training_curve(records: &[EpochRecord], path: &Path) -> Result<(), PlotError> {
    register_fonts()?;
    let fail = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let loss: Vec<(f64, f64)> = records.iter().map(|r| (r.epoch as f64, r.loss)).collect();
    let ndcg: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| r.valid_ndcg10.map(|v| (r.epoch as f64, v)))
        .collect();
    let root = BitMapBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(500);
    panel(&left, &loss, "training loss", &RED).map_err(|e| fail(&e))?;
    panel(&right, &ndcg, "validation NDCG@10", &BLUE).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// Registers [`SANS`] as plotters' `sans-serif`, once per process.
fn register_fonts() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, SANS).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

type PanelError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    points: &[(f64, f64)],
    title: &str,
    colour: &RGBColor,
) -> Result<(), PanelError> {
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
        (y_min, y_max)
    } else {
        (0.0, 1.0)
    };
    let pad = (y_max - y_min) * 0.05;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .caption(title, ("sans-serif", 18))
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))?;
    chart.configure_mesh().x_desc("epoch").draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), colour))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<EpochRecord> {
        (1..=6)
            .map(|epoch| EpochRecord {
                epoch,
                loss: 8.0 / epoch as f64,
                valid_hr10: None,
                valid_ndcg10: (epoch % 2 == 0).then_some(0.02 * epoch as f64),
                seconds: epoch as f64,
                seq_per_sec: 100.0,
                lr: 1e-3,
            })
            .collect()
    }

    /// Dark pixels (any channel under 100: text is black) inside `x0..x1` x `y0..y1`.
    fn dark_pixels(img: &image::RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let p = img.get_pixel(x, y).0;
                if p.iter().all(|&c| c < 100) {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn the_curve_has_titles_and_tick_labels_in_their_areas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        training_curve(&records(), &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (1000, 400));
        // Each panel is 500 px wide with a 10 px margin; its caption sits centred in the top
        // band above the chart, where nothing else is drawn.
        for panel_x in [0, 500] {
            let caption = dark_pixels(&img, (panel_x + 100, panel_x + 400), (0, 30));
            assert!(
                caption > 50,
                "panel at x={panel_x}: caption has {caption} dark pixels"
            );
            // The y tick labels sit left of the axis (x = 60), where no line is drawn.
            let ticks = dark_pixels(&img, (panel_x + 10, panel_x + 48), (40, 340));
            assert!(
                ticks > 50,
                "panel at x={panel_x}: y labels have {ticks} dark pixels"
            );
        }
        // The picture is not one dark blot: most of it is the white background.
        let dark = dark_pixels(&img, (0, 1000), (0, 400));
        assert!(dark < 1000 * 400 / 4, "{dark} dark pixels");
    }
}
