//! `report.json`: what a finished run reports, in one shape for every kind
//! of run, so that the HTML report renders any run without knowing its
//! family: metrics (name, value, unit, which direction is better), figures
//! with captions, tables, the training curves worth charting, and
//! family-specific details for the reader who wants them.
use serde::{Deserialize, Serialize};

pub const REPORT: &str = "report.json";
/// The report format this version writes.
pub const REPORT_FORMAT: u32 = 2;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    /// Descriptive (a count, a size, a time that is not a target).
    Neither,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    /// "%", "nats/image", "bits/dim", "s", "" (a ratio or count), …
    pub unit: String,
    pub better: Better,
    /// How it was measured (sample counts, estimator), shown beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Figure {
    /// A PNG in the run folder.
    pub file: String,
    pub caption: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    /// Plain text cells.
    pub rows: Vec<Vec<String>>,
    /// Cells (by row, column) to highlight, e.g. correct translations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub highlight: Vec<(usize, usize)>,
    /// Shown open (true) or folded.
    #[serde(default)]
    pub open: bool,
}

/// A series of `metrics.jsonl` worth charting: the numbers found at `key`
/// (a dotted path such as `valid.loss`) against `x` (`epoch` or
/// `iteration`). Runs of a section that share a curve are overlaid.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Curve {
    pub key: String,
    pub label: String,
    pub x: String,
    #[serde(default)]
    pub unit: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    pub format: u32,
    /// The run's kind, as in `run.json`.
    pub kind: String,
    /// The report section it belongs to ("Image models", "Word translation").
    pub section: String,
    /// One line: what was run on what.
    pub title: String,
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub figures: Vec<Figure>,
    #[serde(default)]
    pub tables: Vec<Table>,
    #[serde(default)]
    pub curves: Vec<Curve>,
    /// Family-specific results, kept whole.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Report {
    pub fn new(kind: &str, section: &str, title: impl Into<String>) -> Self {
        Self {
            format: REPORT_FORMAT,
            kind: kind.into(),
            section: section.into(),
            title: title.into(),
            metrics: vec![],
            figures: vec![],
            tables: vec![],
            curves: vec![],
            details: serde_json::Value::Null,
        }
    }
    /// Adds a metric (NaN values are skipped: "not measured").
    pub fn metric(&mut self, name: &str, value: f64, unit: &str, better: Better) -> &mut Metric {
        self.metrics.push(Metric {
            name: name.into(),
            value,
            unit: unit.into(),
            better,
            note: None,
        });
        self.metrics.last_mut().expect("just pushed")
    }
    pub fn figure(&mut self, file: impl Into<String>, caption: impl Into<String>) {
        self.figures.push(Figure {
            file: file.into(),
            caption: caption.into(),
        });
    }
    pub fn curve(&mut self, key: &str, label: &str, x: &str, unit: &str) {
        self.curves.push(Curve {
            key: key.into(),
            label: label.into(),
            x: x.into(),
            unit: unit.into(),
        });
    }
    /// The value of the metric `name`, if reported.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

impl Metric {
    pub fn with_note(&mut self, note: impl Into<String>) -> &mut Self {
        self.note = Some(note.into());
        self
    }
}

/// One step of a pipeline of runs (the demo writes them to `steps.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    /// "ok", "failed" or "skipped".
    pub status: String,
    pub seconds: f64,
    pub error: Option<String>,
    /// The run folder the step wrote, if any.
    pub run: Option<std::path::PathBuf>,
}

pub const STEPS_FILE: &str = "steps.json";
