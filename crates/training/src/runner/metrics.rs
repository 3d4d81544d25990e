//! JSON-lines metrics and the loss-curve plot.

use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::TrainError;

/// Appends one JSON object per line to a file.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending (a resumed run continues the file).
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TrainError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Writes one record.
    pub fn write(&mut self, record: &serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{record}").map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Opens `path` for a run at step `first_step`: the records of earlier
    /// steps are kept, those of `first_step` on (written after the
    /// checkpoint a run resumes from, and repeated by the resumed run) are
    /// dropped. At step 0 the file starts empty.
    pub fn continue_at(path: &Path, first_step: usize) -> Result<Self, TrainError> {
        let io = |source| TrainError::Io {
            path: path.to_owned(),
            source,
        };
        let kept = match std::fs::read_to_string(path) {
            Ok(text) if first_step > 0 => text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|r| r.get("step")?.as_u64())
                        .is_some_and(|step| (step as usize) < first_step)
                })
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
            Ok(_) => String::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        std::fs::write(path, kept).map_err(io)?;
        Self::open(path)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads `(step, value)` of `key` from the records of a metrics file that
/// have both.
pub fn read_series(path: &Path, key: &str) -> Result<Vec<(f64, f64)>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?)))
        .collect())
}

/// Registers a system sans-serif font for the plot labels, once. Without
/// one the plot is drawn without text.
fn font_available() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        const CANDIDATES: [&str; 3] = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
        ];
        CANDIDATES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
    })
}

/// Draws the named series (e.g. each loss against the step) into a PNG.
pub fn plot_curves(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), TrainError> {
    let err = |message: String| TrainError::Plot {
        path: path.to_owned(),
        message,
    };
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (x_max, y_max) = points.fold((1.0f64, 0.0f64), |(x, y), &(px, py)| (x.max(px), y.max(py)));
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let labelled = font_available();
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labelled {
        builder
            .caption(title, ("sans-serif", 24))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..x_max, 0.0..(y_max * 1.05).max(1e-6))
        .map_err(|e| err(e.to_string()))?;
    if labelled {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    let colours = [RED, BLUE, GREEN, MAGENTA, BLACK, CYAN];
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let drawn = chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?;
        if labelled {
            drawn.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_drops_the_records_it_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::continue_at(&path, 0).unwrap();
        for step in 0..5 {
            log.write(&serde_json::json!({ "step": step, "loss": 1.0 }))
                .unwrap();
        }
        log.write(&serde_json::json!({ "eval": "r1" })).unwrap();
        // The checkpoint was written after step 2: steps 3 and 4 repeat.
        let mut log = MetricsLog::continue_at(&path, 3).unwrap();
        log.write(&serde_json::json!({ "step": 3, "loss": 0.5 }))
            .unwrap();
        let steps: Vec<(f64, f64)> = read_series(&path, "loss").unwrap();
        assert_eq!(steps, [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 0.5)]);
        // A fresh run starts an empty file.
        MetricsLog::continue_at(&path, 0).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().is_empty());
    }
}
