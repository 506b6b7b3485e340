//! The training curve as a PNG: mean loss per epoch (left) and validation NDCG@10 (right).

use std::path::Path;

use plotters::prelude::*;

use super::run_dir::EpochRecord;

/// Draws `records` into `path`. Without usable fonts the charts are drawn without labels.
pub fn training_curve(records: &[EpochRecord], path: &Path) -> Result<(), String> {
    draw(records, path, true).or_else(|_| draw(records, path, false))
}

fn draw(records: &[EpochRecord], path: &Path, labels: bool) -> Result<(), String> {
    let loss: Vec<(f64, f64)> = records.iter().map(|r| (r.epoch as f64, r.loss)).collect();
    let ndcg: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| r.valid_ndcg10.map(|v| (r.epoch as f64, v)))
        .collect();
    let root = BitMapBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(500);
    panel(&left, &loss, "training loss", &RED, labels)?;
    panel(&right, &ndcg, "validation NDCG@10", &BLUE, labels)?;
    root.present().map_err(|e| e.to_string())
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    points: &[(f64, f64)],
    title: &str,
    colour: &RGBColor,
    labels: bool,
) -> Result<(), String> {
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y_min, y_max) = if y_min.is_finite() && y_max > y_min {
        (y_min, y_max)
    } else {
        (0.0, 1.0)
    };
    let pad = (y_max - y_min) * 0.05;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50);
    if labels {
        builder.caption(title, ("sans-serif", 18));
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| e.to_string())?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(LineSeries::new(points.iter().copied(), colour))
        .map_err(|e| e.to_string())?;
    Ok(())
}
