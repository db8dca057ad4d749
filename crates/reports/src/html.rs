//! The HTML report: one self-contained file (inline CSS, images as data
//! URIs, no external script, font or style sheet) describing any set of run
//! folders, of any kind, without knowing the kinds in advance: each run
//! says what it is (`run.json`) and reports its metrics, figures, tables
//! and curves in one shape (`report.json`). Runs are grouped by the section
//! their report names; each section gets one table of every metric its runs
//! report (the best value of each column marked), spreads over repeated
//! runs (equal configuration but the seed), training curves with the runs
//! overlaid on one chart per quantity, and each run's configuration,
//! tables and figures. A pipeline such as the demo adds its steps.
//!
//! A run that stopped before writing its report still shows what it
//! logged; a broken `report.json` or `config.json` is shown as broken,
//! naming the problem; a folder made before run format 2 is listed as
//! refused, with the reason.
use crate::plot::{line_chart_png, Series};
use crate::{ReportError, Result};
use base64::Engine;
use embedlab_train::report::{Report, Step, REPORT, STEPS_FILE};
use embedlab_train::run::{read_info, read_metrics, RunInfo, CONFIG, RUN_FILE};
use embedlab_train::Better;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A run folder as the report sees it.
struct Run {
    name: String,
    dir: PathBuf,
    info: Option<RunInfo>,
    /// Why the folder is not rendered as a run, if it is not.
    refused: Option<String>,
    config: std::result::Result<Option<Value>, String>,
    report: std::result::Result<Option<Report>, String>,
    metrics: Vec<Value>,
    /// What was left out or mended on reading the folder (lines of
    /// metrics.jsonl, unreadable images), shown with the run.
    warnings: Vec<String>,
    /// PNGs in the folder that the report does not caption.
    loose_images: Vec<PathBuf>,
}

impl Run {
    fn report(&self) -> Option<&Report> {
        self.report.as_ref().ok().and_then(|r| r.as_ref())
    }
}

/// Reads an optional JSON file: None when absent, an error naming the
/// problem when present but unreadable.
fn read_json_file<T: serde::de::DeserializeOwned>(
    p: &Path,
) -> std::result::Result<Option<T>, String> {
    let bytes = match std::fs::read(p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", p.display())),
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: not text (binary or not UTF-8)", p.display()))?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| format!("{}: broken: {e}", p.display()))
}

/// Whether a folder looks like a run (of any format).
fn is_run(dir: &Path) -> bool {
    [RUN_FILE, REPORT, CONFIG, "metrics.jsonl"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

fn load_run(dir: &Path) -> Run {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    let (info, refused) = match read_info(dir) {
        Ok(i) => (Some(i), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let report: std::result::Result<Option<Report>, String> = read_json_file(&dir.join(REPORT));
    let captioned: BTreeSet<String> = report
        .as_ref()
        .ok()
        .and_then(|r| r.as_ref())
        .map(|r| r.figures.iter().map(|f| f.file.clone()).collect())
        .unwrap_or_default();
    let mut loose_images: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .filter(|p| {
                    !captioned.contains(
                        &p.file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    loose_images.sort();
    let (metrics, warnings) = read_metrics_lines(dir);
    Run {
        name,
        dir: dir.to_path_buf(),
        info,
        refused,
        config: read_json_file(&dir.join(CONFIG)),
        report,
        metrics,
        warnings,
        loose_images,
    }
}

/// The lines of `metrics.jsonl`, with what could not be read said: a line
/// holding NaN or ±Infinity (which JSON cannot spell, but other writers
/// put there) is read with those values as gaps; a line that is not JSON
/// at all is left out. Either is named by its line number.
fn read_metrics_lines(dir: &Path) -> (Vec<Value>, Vec<String>) {
    let path = dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return (read_metrics(dir), vec![]);
    };
    let (mut out, mut gaps, mut dropped) = (vec![], vec![], vec![]);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) => out.push(v),
            Err(_) => {
                let mended = non_finite_as_null(line);
                match serde_json::from_str::<Value>(&mended) {
                    Ok(v) if mended != line => {
                        gaps.push((i + 1).to_string());
                        out.push(v)
                    }
                    _ => dropped.push((i + 1).to_string()),
                }
            }
        }
    }
    let mut warnings = vec![];
    let name = path.display().to_string();
    if !gaps.is_empty() {
        warnings.push(format!(
            "{name}: line(s) {} hold NaN or infinite values, drawn as gaps in the curves",
            gaps.join(", ")
        ));
    }
    if !dropped.is_empty() {
        warnings.push(format!(
            "{name}: line(s) {} are not JSON and are left out",
            dropped.join(", ")
        ));
    }
    (out, warnings)
}

/// `NaN`, `Infinity` and `-Infinity` outside strings, as `null`.
fn non_finite_as_null(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let (mut in_str, mut esc_next) = (false, false);
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if in_str {
            out.push(c);
            if esc_next {
                esc_next = false;
            } else if c == '\\' {
                esc_next = true;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        let rest = &line[i..];
        if let Some(t) = ["-Infinity", "Infinity", "NaN"]
            .iter()
            .find(|t| rest.starts_with(**t))
        {
            out.push_str("null");
            i += t.len();
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        // Keep multi-byte characters whole.
        let ch = rest.chars().next().unwrap_or(c);
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Whether `bytes` decode as a PNG; the reason when they do not.
fn check_png(bytes: &[u8]) -> std::result::Result<(), String> {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .map(|_| ())
        .map_err(|e| format!("not a readable PNG ({e}); left out"))
}

/// Finds the runs under the given folders: a folder that is a run, or the
/// runs one level below it (a demo's folder), in name order; and the steps
/// of any `steps.json` met on the way.
fn collect(inputs: &[PathBuf]) -> Result<(Vec<Run>, Vec<Step>, Vec<String>)> {
    let mut runs = vec![];
    let mut steps = vec![];
    let mut problems = vec![];
    for d in inputs {
        if !d.is_dir() {
            return Err(ReportError::Invalid(format!(
                "{}: no such run folder",
                d.display()
            )));
        }
        match read_json_file::<Vec<Step>>(&d.join(STEPS_FILE)) {
            Ok(Some(s)) => steps.extend(s),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
        if is_run(d) {
            runs.push(load_run(d));
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| ReportError::Invalid(format!("{}: {e}", d.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && is_run(p))
            .collect();
        subs.sort();
        runs.extend(subs.iter().map(|p| load_run(p)));
    }
    Ok((runs, steps, problems))
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// A number as a table shows it: whole numbers bare, then 2–4 decimals by
/// size, and values under 10⁻³ in scientific notation (so 3.5e-6 does not
/// read as 0.0000).
pub fn fmt_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        return format!("{v:.2e}");
    }
    fmt_decimals(v, decimals(v))
}

/// The decimals `fmt_value` gives `v`: none for a whole number.
fn decimals(v: f64) -> usize {
    let a = v.abs();
    if !v.is_finite() || (v.fract() == 0.0 && a < 1e12) {
        0
    } else if a >= 100.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        4
    }
}

fn fmt_decimals(v: f64, d: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    format!("{v:.d$}")
}

/// One column's numbers with the same decimals (the most any of them needs),
/// so that 10 and 20.933 read as 10.000 and 20.933.
fn column_decimals(vals: impl Iterator<Item = f64>) -> usize {
    vals.map(decimals).max().unwrap_or(0)
}

/// `(mean, sd, min, max)` of the values.
pub fn spread(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (m, sd, lo, hi)
}

/// A configuration with what differs between repetitions removed (seeds,
/// output folders, and the `analysis` options, which only choose the
/// figures drawn after training): runs with equal signatures are repetitions.
fn signature(kind: &str, config: Option<&Value>) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "seed" | "out" | "resume" | "overwrite" | "analysis"
                        )
                    })
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            v => v.clone(),
        }
    }
    format!("{kind}:{}", config.map(strip).unwrap_or(Value::Null))
}

/// Flattens a JSON object into `a.b.c = value` rows.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::String(s) => out.push((prefix.into(), s.clone())),
        v => out.push((prefix.into(), v.to_string())),
    }
}

/// Path-like lookup: `get(v, "valid.loss")`.
fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(path) {
        return Some(x);
    }
    path.split('.').try_fold(v, |v, k| v.get(k))
}

struct Html {
    body: String,
    toc: Vec<(String, String)>,
}

impl Html {
    fn section(&mut self, id: &str, title: &str) {
        self.toc.push((id.into(), title.into()));
        let _ = writeln!(self.body, "<h2 id=\"{id}\">{}</h2>", esc(title));
    }
    /// A table; cells are HTML already escaped by the callers.
    fn table(&mut self, head: &[String], rows: &[Vec<String>]) {
        self.body.push_str("<table><thead><tr>");
        for h in head {
            let _ = write!(self.body, "<th>{h}</th>");
        }
        self.body.push_str("</tr></thead><tbody>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for i in 0..head.len().max(r.len()) {
                let _ = write!(
                    self.body,
                    "<td>{}</td>",
                    r.get(i).map(String::as_str).unwrap_or("")
                );
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table>\n");
    }
    fn figure(&mut self, png: &[u8], caption: &str, class: &str) {
        let _ = writeln!(
            self.body,
            "<figure class=\"{class}\"><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
            data_uri(png),
            esc(caption),
            esc(caption)
        );
    }
    fn config(&mut self, run: &Run) {
        match &run.config {
            Ok(Some(c)) => {
                let mut rows = vec![];
                flatten("", c, &mut rows);
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(k, v)| vec![esc(&k), esc(&v)])
                    .collect();
                self.body
                    .push_str("<details><summary>configuration</summary>");
                self.table(&["option".into(), "value".into()], &rows);
                self.body.push_str("</details>\n");
            }
            Ok(None) => self
                .body
                .push_str("<p class=\"fail\">This run has no config.json.</p>\n"),
            Err(e) => {
                let _ = writeln!(self.body, "<p class=\"fail\">{}</p>", esc(e));
            }
        }
    }
}

fn arrow(b: Better) -> &'static str {
    match b {
        Better::Higher => " ↑",
        Better::Lower => " ↓",
        Better::Neither => "",
    }
}

/// The section a run belongs to: its report's, or for a run without a
/// report that of a finished run of the same kind, or "Unfinished runs".
fn section_of(r: &Run, by_kind: &BTreeMap<String, String>) -> String {
    if r.refused.is_some() {
        return "Refused run folders".into();
    }
    if let Some(rep) = r.report() {
        return rep.section.clone();
    }
    r.info
        .as_ref()
        .and_then(|i| by_kind.get(&i.kind).cloned())
        .unwrap_or_else(|| "Unfinished runs".into())
}

/// One section: the table of metrics, spreads, overlaid curves, and each run.
fn section(h: &mut Html, id: &str, title: &str, runs: &[&Run]) {
    h.section(id, title);
    // Columns: every metric name, in the order first met.
    let mut cols: Vec<(String, String, Better)> = vec![];
    for r in runs {
        if let Some(rep) = r.report() {
            for m in &rep.metrics {
                if !cols.iter().any(|c| c.0 == m.name) {
                    cols.push((m.name.clone(), m.unit.clone(), m.better));
                }
            }
        }
    }
    // The best value of each column.
    let best: Vec<Option<f64>> = cols
        .iter()
        .map(|(name, _, better)| {
            let vals = runs
                .iter()
                .filter_map(|r| r.report()?.value(name))
                .filter(|v| v.is_finite());
            match better {
                Better::Higher => {
                    vals.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
                }
                Better::Lower => {
                    vals.fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))))
                }
                Better::Neither => None,
            }
        })
        .collect();
    let places: Vec<usize> = cols
        .iter()
        .map(|(name, _, _)| column_decimals(runs.iter().filter_map(|r| r.report()?.value(name))))
        .collect();
    let mut head = vec!["run".to_string(), "what".to_string()];
    head.extend(cols.iter().map(|(n, u, b)| {
        let unit = if u.is_empty() {
            String::new()
        } else {
            format!(" <small>({})</small>", esc(u))
        };
        format!("{}{unit}{}", esc(n), arrow(*b))
    }));
    let mut rows = vec![];
    for r in runs {
        let mut row = vec![format!(
            "<a href=\"#run-{}\">{}</a>",
            esc(&r.name),
            esc(&r.name)
        )];
        if let Some(rep) = r.report() {
            row.push(esc(&rep.title));
            for (((name, _, _), b), &places) in cols.iter().zip(&best).zip(&places) {
                let cell = match rep.metrics.iter().find(|m| &m.name == name) {
                    Some(m) => {
                        let v = esc(&fmt_decimals(m.value, places));
                        let v = if Some(m.value) == *b && runs.len() > 1 {
                            format!("<b>{v}</b>")
                        } else {
                            v
                        };
                        match &m.note {
                            Some(n) => format!("<span title=\"{}\">{v}</span>", esc(n)),
                            None => v,
                        }
                    }
                    None => "–".into(),
                };
                row.push(cell);
            }
        } else if let Err(e) = &r.report {
            row.push(format!("<span class=\"fail\">{}</span>", esc(e)));
        } else {
            row.push(format!(
                "<span class=\"fail\">did not finish</span> ({} lines logged)",
                r.metrics.len()
            ));
        }
        rows.push(row);
    }
    h.body.push_str("<p>One row a run; ↑ higher is better, ↓ lower is better, the best of each column in bold; hover a value for how it was measured.</p>\n");
    h.table(&head, &rows);
    spreads(h, runs, &cols);
    curves(h, id, runs);
    for r in runs {
        let _ = writeln!(
            h.body,
            "<h3 id=\"run-{}\">{}</h3>",
            esc(&r.name),
            esc(&r.name)
        );
        if let Some(rep) = r.report() {
            let _ = writeln!(h.body, "<p>{}</p>", esc(&rep.title));
        } else if let Err(e) = &r.report {
            let _ = writeln!(h.body, "<p class=\"fail\">{}</p>", esc(e));
        } else {
            h.body.push_str("<p class=\"fail\">This run has no report.json: it stopped before its evaluation. What it logged is below.</p>\n");
        }
        for w in &r.warnings {
            let _ = writeln!(h.body, "<p class=\"fail\">{}</p>", esc(w));
        }
        h.config(r);
        if let Some(rep) = r.report() {
            for t in &rep.tables {
                let rows: Vec<Vec<String>> = t
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, row)| {
                        row.iter()
                            .enumerate()
                            .map(|(j, c)| {
                                if t.highlight.contains(&(i, j)) {
                                    format!("<span class=\"hit\">{}</span>", esc(c))
                                } else {
                                    esc(c)
                                }
                            })
                            .collect()
                    })
                    .collect();
                let head: Vec<String> = t.columns.iter().map(|c| esc(c)).collect();
                let _ = write!(
                    h.body,
                    "<details{}><summary>{}</summary>",
                    if t.open { " open" } else { "" },
                    esc(&t.title)
                );
                h.table(&head, &rows);
                h.body.push_str("</details>\n");
            }
            for f in &rep.figures {
                match std::fs::read(r.dir.join(&f.file))
                    .map_err(|e| e.to_string())
                    .and_then(|png| check_png(&png).map(|_| png))
                {
                    Ok(png) => h.figure(&png, &format!("{}: {}", r.name, f.caption), "grid"),
                    Err(e) => {
                        let _ = writeln!(
                            h.body,
                            "<p class=\"fail\">{}: {e}</p>",
                            esc(&r.dir.join(&f.file).display().to_string())
                        );
                    }
                }
            }
        }
        for p in &r.loose_images {
            if let Ok(png) = std::fs::read(p) {
                if let Err(e) = check_png(&png) {
                    let _ = writeln!(
                        h.body,
                        "<p class=\"fail\">{}: {}</p>",
                        esc(&p.display().to_string()),
                        esc(&e)
                    );
                    continue;
                }
                let stem = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                h.figure(&png, &format!("{}: {stem}", r.name), "grid");
            }
        }
    }
}

/// For groups of repeated runs (equal configuration but the seed), the
/// mean ± sd (min–max) of each metric.
fn spreads(h: &mut Html, runs: &[&Run], cols: &[(String, String, Better)]) {
    let mut groups: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        if let (Some(rep), Ok(Some(c))) = (r.report(), &r.config) {
            groups
                .entry(signature(&rep.kind, Some(c)))
                .or_default()
                .push(r);
        }
    }
    let mut rows = vec![];
    for members in groups.values().filter(|g| g.len() > 1) {
        let names: Vec<&str> = members.iter().map(|r| r.name.as_str()).collect();
        let mut row = vec![esc(&names.join(", ")), members.len().to_string()];
        for (name, _, _) in cols {
            let vals: Vec<f64> = members
                .iter()
                .filter_map(|r| r.report()?.value(name))
                .filter(|v| v.is_finite())
                .collect();
            row.push(if vals.len() < 2 {
                "–".into()
            } else {
                let (m, sd, lo, hi) = spread(&vals);
                format!("{m:.2} ± {sd:.2} ({lo:.2}–{hi:.2})")
            });
        }
        rows.push(row);
    }
    if !rows.is_empty() {
        h.body.push_str("<p>Repetitions (the same configuration, other seeds): mean ± standard deviation (min–max).</p>\n");
        let mut head = vec!["runs".to_string(), "n".to_string()];
        head.extend(cols.iter().map(|c| esc(&c.0)));
        h.table(&head, &rows);
    }
}

/// The series at `key` against `x` in a run's log.
fn series_of(r: &Run, key: &str, x: &str) -> Vec<(f64, f64)> {
    r.metrics
        .iter()
        .filter_map(|l| {
            let xv = get(l, x)?.as_f64()?;
            let yv = get(l, key)?.as_f64()?;
            Some((xv, yv))
        })
        .collect()
}

/// One chart per curve the section's runs declare, every run that has it
/// overlaid with a legend; a quantity that never changes is said in words.
fn curves(h: &mut Html, id: &str, runs: &[&Run]) {
    let mut declared: Vec<(String, String, String, String)> = vec![];
    for r in runs {
        if let Some(rep) = r.report() {
            for c in &rep.curves {
                if !declared.iter().any(|d| d.0 == c.key && d.2 == c.x) {
                    declared.push((c.key.clone(), c.label.clone(), c.x.clone(), c.unit.clone()));
                }
            }
        }
    }
    let mut constants = vec![];
    // A constant quantity is said once, whatever it was plotted against.
    let mut said: BTreeSet<&str> = BTreeSet::new();
    for (n, (key, label, x, unit)) in declared.iter().enumerate() {
        let series: Vec<Series> = runs
            .iter()
            .map(|r| Series {
                name: r.name.clone(),
                points: series_of(r, key, x),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let ys: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .collect();
        let (lo, hi) = ys
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
                (a.min(y), b.max(y))
            });
        let points = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
        if hi - lo <= 1e-12 * hi.abs().max(1.0) || points < 2 {
            if !said.insert(label.as_str()) {
                continue;
            }
            constants.push(format!(
                "{label}: {}{} ({})",
                fmt_value(lo),
                if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                },
                if points < 2 {
                    "one point".to_string()
                } else {
                    format!("the same at every {x}")
                }
            ));
            continue;
        }
        let title = if unit.is_empty() {
            label.clone()
        } else {
            format!("{label} ({unit})")
        };
        match line_chart_png(&series, &title, x, label) {
            Ok(png) => h.figure(
                &png,
                &format!(
                    "{title} by {x}: {}",
                    series
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "chart",
            ),
            Err(e) => {
                let _ = writeln!(
                    h.body,
                    "<p class=\"fail\">chart {n} of {id}: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
    }
    if !constants.is_empty() {
        let _ = writeln!(
            h.body,
            "<p>Constant during training: {}.</p>",
            esc(&constants.join("; "))
        );
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.8em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}\
table{border-collapse:collapse;margin:.8em 0;font-size:.85em;display:block;overflow-x:auto}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}tbody tr:nth-child(even){background:#fafafa}figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figure.chart img{width:520px}\
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555;max-width:720px}\
.hit{color:#1a7f37;font-weight:bold}.fail{color:#b00020}.ok{color:#1a7f37}details{margin:.5em 0}summary{cursor:pointer;color:#0b5394}\
nav a{margin-right:1em}#render-check{font-size:.8em;color:#777;margin-top:3em}";

/// Counts, after loading, the images that decoded and the tables that were
/// laid out; the result goes on `<body>` (data-images-ok, data-images,
/// data-tables-ok, data-tables) and in the page footer. It also counts the
/// tables that stick out of the page (data-tables-overflowing: none should,
/// a wide table scrolls within its own box) and those that scroll
/// (data-tables-scrolling).
const CHECK: &str = "window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);\
var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;\
var tb=Array.prototype.slice.call(document.querySelectorAll('table'));\
var ds=Array.prototype.slice.call(document.querySelectorAll('details'));var was=ds.map(function(d){return d.open;});\
ds.forEach(function(d){d.open=true;});\
var tok=tb.filter(function(t){return t.rows.length>0&&t.getBoundingClientRect().width>0;}).length;\
var pw=document.documentElement.clientWidth;\
var wide=tb.filter(function(t){return t.getBoundingClientRect().right>pw+1;}).length;\
var scr=tb.filter(function(t){return t.scrollWidth>t.clientWidth+1;}).length;\
ds.forEach(function(d,i){d.open=was[i];});\
var b=document.body;b.setAttribute('data-images-ok',ok);b.setAttribute('data-images',im.length);\
b.setAttribute('data-tables-ok',tok);b.setAttribute('data-tables',tb.length);\
b.setAttribute('data-tables-overflowing',wide);b.setAttribute('data-tables-scrolling',scr);\
document.getElementById('render-check').textContent=ok+' of '+im.length+' images and '+tok+' of '+tb.length+' tables rendered.';});";

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Builds the report of `inputs` (run folders, or folders of runs).
pub fn build_report(inputs: &[PathBuf], title: &str) -> Result<String> {
    let (runs, steps, problems) = collect(inputs)?;
    if runs.is_empty() && steps.is_empty() {
        return Err(ReportError::Invalid(format!(
            "no run folders in {}",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut h = Html {
        body: String::new(),
        toc: vec![],
    };
    for p in &problems {
        let _ = writeln!(h.body, "<p class=\"fail\">{}</p>", esc(p));
    }
    if !steps.is_empty() {
        h.section("steps", "Steps");
        let failed = steps.iter().filter(|s| s.status == "failed").count();
        let _ = writeln!(
            h.body,
            "<p>{} steps: {} finished, <span class=\"{}\">{failed} failed</span>.</p>",
            steps.len(),
            steps.iter().filter(|s| s.status == "ok").count(),
            if failed > 0 { "fail" } else { "ok" }
        );
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|s| {
                let cls = if s.status == "ok" { "ok" } else { "fail" };
                vec![
                    esc(&s.name),
                    format!("<span class=\"{cls}\">{}</span>", esc(&s.status)),
                    format!("{:.1}", s.seconds),
                    esc(&s
                        .run
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()),
                    esc(s.error.as_deref().unwrap_or("")),
                ]
            })
            .collect();
        h.table(
            &["step", "status", "seconds", "run folder", "error"].map(String::from),
            &rows,
        );
    }
    let by_kind: BTreeMap<String, String> = runs
        .iter()
        .filter_map(|r| Some((r.info.as_ref()?.kind.clone(), r.report()?.section.clone())))
        .collect();
    // Sections in the order first met; refused folders last.
    let mut order: Vec<String> = vec![];
    for r in &runs {
        let s = section_of(r, &by_kind);
        if !order.contains(&s) {
            order.push(s);
        }
    }
    order.sort_by_key(|s| s == "Refused run folders");
    for s in &order {
        let members: Vec<&Run> = runs
            .iter()
            .filter(|r| &section_of(r, &by_kind) == s)
            .collect();
        if s == "Refused run folders" {
            h.section("refused", s);
            let rows: Vec<Vec<String>> = members
                .iter()
                .map(|r| {
                    vec![
                        esc(&r.dir.display().to_string()),
                        esc(r.refused.as_deref().unwrap_or("")),
                    ]
                })
                .collect();
            h.table(&["folder".into(), "why it is not shown".into()], &rows);
            continue;
        }
        section(&mut h, &slug(s), s, &members);
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>{STYLE}</style></head>\n<body>\n<h1>{t}</h1>\n<p>{} run folder(s): {}</p>\n<nav>",
        runs.len(),
        esc(&inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")),
        t = esc(title)
    );
    for (id, t) in &h.toc {
        let _ = write!(out, "<a href=\"#{id}\">{}</a>", esc(t));
    }
    out.push_str("</nav>\n");
    out.push_str(&h.body);
    let _ = writeln!(
        out,
        "<p id=\"render-check\"></p>\n<script>{CHECK}</script>\n</body></html>"
    );
    Ok(out)
}

/// Builds the report and writes it atomically to `path`.
pub fn write_report(path: &Path, inputs: &[PathBuf], title: &str) -> Result<()> {
    let html = build_report(inputs, title)?;
    embedlab_data::atomic::write_atomic(path, |w| w.write_all(html.as_bytes()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedlab_train::run::{Reuse, RunDir};
    use embedlab_train::Table;

    fn write(p: &Path, v: &Value) {
        std::fs::write(p, serde_json::to_string(v).unwrap()).unwrap();
    }

    fn word_run(root: &Path, name: &str, seed: i64, p1: f64) {
        let r = RunDir::create(
            "align-supervised",
            Some(&root.join(name)),
            Reuse::Refuse,
            &serde_json::json!({}),
        )
        .unwrap();
        write(
            &r.file("config.json"),
            &serde_json::json!({"method": "procrustes", "seed": seed}),
        );
        let mut rep = Report::new(
            "align-supervised",
            "Word translation",
            "procrustes: en → fr",
        );
        rep.metric("CSLS P@1", p1, "%", Better::Higher)
            .with_note("100 test source words");
        rep.metric("fit time", 2.0 + seed as f64, "s", Better::Lower);
        rep.tables.push(Table {
            title: "examples".into(),
            columns: vec!["word".into(), "candidate".into()],
            rows: vec![vec!["cat<".into(), "chat".into()]],
            highlight: vec![(0, 1)],
            open: false,
        });
        rep.curve("selection", "held-out P@1", "iteration", "%");
        r.write_json(REPORT, &rep).unwrap();
        for (i, v) in [30.0, 35.0 + seed as f64].iter().enumerate() {
            r.log(&serde_json::json!({"event": "iteration", "iteration": i, "selection": v, "criterion": 0.5}))
                .unwrap();
        }
    }

    #[test]
    fn a_column_shows_its_numbers_with_the_same_decimals() {
        let d = tempfile::tempdir().unwrap();
        word_run(d.path(), "a", 1, 10.0);
        word_run(d.path(), "b", 2, 20.93333);
        let html = build_report(&[d.path().to_path_buf()], "test").unwrap();
        assert!(
            html.contains(">10.000<") && html.contains("20.933"),
            "{html}"
        );
        // A column of whole numbers stays whole ("fit time": 3 and 4 s).
        assert!(html.contains(">3<") && html.contains(">4<"), "{html}");
        assert_eq!(column_decimals([1.0, 250.5, 0.5].into_iter()), 4);
        assert_eq!(column_decimals([1.0, 2.0].into_iter()), 0);
        assert_eq!(fmt_decimals(f64::NAN, 3), "–");
    }

    #[test]
    fn any_kind_renders_from_its_report_with_spreads_curves_and_failures() {
        let d = tempfile::tempdir().unwrap();
        word_run(d.path(), "en-fr-seed1", 1, 40.0);
        word_run(d.path(), "en-fr-seed2", 2, 44.0);
        // A kind the report has never heard of.
        let r = RunDir::create(
            "flow-of-the-future",
            Some(&d.path().join("novel")),
            Reuse::Refuse,
            &serde_json::json!({}),
        )
        .unwrap();
        let mut rep = Report::new("flow-of-the-future", "Normalizing flows", "a new family");
        rep.metric("bits/dim", 1.23, "bits/dim", Better::Lower);
        rep.curve("valid.loss", "validation loss", "epoch", "");
        rep.curve("valid.loss", "validation loss", "minutes", "");
        r.write_json(REPORT, &rep).unwrap();
        for e in 1..=3 {
            r.log(&serde_json::json!({"epoch": e, "minutes": 0.5 * e as f64, "valid": {"loss": 4.0 - e as f64}}))
                .unwrap();
        }
        // A run that did not finish, one with a corrupt report, one with a binary config.
        let r = RunDir::create(
            "train",
            Some(&d.path().join("unfinished")),
            Reuse::Refuse,
            &serde_json::json!({}),
        )
        .unwrap();
        r.log(&serde_json::json!({"epoch": 1, "valid": {"loss": 3.0}}))
            .unwrap();
        let r = RunDir::create(
            "train",
            Some(&d.path().join("corrupt")),
            Reuse::Refuse,
            &serde_json::json!({}),
        )
        .unwrap();
        std::fs::write(r.file(REPORT), "{\"format\": 2, \"kind\":").unwrap();
        std::fs::write(r.file("config.json"), [0xffu8, 0xfe, 0x00]).unwrap();
        // A folder from before run format 2.
        let old = d.path().join("old-run");
        std::fs::create_dir(&old).unwrap();
        write(
            &old.join("report.json"),
            &serde_json::json!({"precision": []}),
        );
        let steps = vec![Step {
            name: "vae".into(),
            status: "failed".into(),
            seconds: 2.0,
            error: Some("loss became NaN".into()),
            run: None,
        }];
        write(
            &d.path().join(STEPS_FILE),
            &serde_json::to_value(&steps).unwrap(),
        );
        let html = build_report(&[d.path().to_path_buf()], "test").unwrap();
        assert!(
            html.contains("1 failed") && html.contains("loss became NaN"),
            "steps"
        );
        assert!(
            html.contains("42.00 ± 2.83 (40.00–44.00)"),
            "spread over the two seeds"
        );
        assert!(html.contains("<b>44</b>"), "the best P@1 in bold");
        assert!(
            html.contains("CSLS P@1 <small>(%)</small> ↑"),
            "units and direction"
        );
        assert!(
            html.contains("cat&lt;") && html.contains("class=\"hit\">chat"),
            "tables, escaped"
        );
        assert!(
            html.contains("Normalizing flows") && html.contains("bits/dim"),
            "an unknown kind renders"
        );
        assert!(html.contains("did not finish"), "unfinished run");
        assert!(html.contains("report.json: broken"), "corrupt report named");
        assert!(
            html.contains("config.json: not text"),
            "binary config named"
        );
        assert!(
            html.contains("Refused run folders") && html.contains("before run format 2"),
            "old run refused"
        );
        assert!(
            html.contains("held-out P@1 (%) by iteration: en-fr-seed1, en-fr-seed2"),
            "runs overlaid on one chart"
        );
        assert!(
            html.contains("validation loss by epoch: novel")
                && html.contains("validation loss by minutes: novel"),
            "a curve against epochs and against minutes of training"
        );
        assert!(html.contains("data:image/png;base64,"), "curve embedded");
        for bad in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
            assert!(!html.contains(bad), "external reference {bad}");
        }
        assert!(build_report(&[d.path().join("nope")], "x").is_err());
    }

    #[test]
    fn a_constant_series_is_said_not_drawn() {
        let d = tempfile::tempdir().unwrap();
        let r = RunDir::create(
            "train",
            Some(&d.path().join("r")),
            Reuse::Refuse,
            &serde_json::json!({}),
        )
        .unwrap();
        let mut rep = Report::new("train", "Image models", "x");
        rep.curve("lr.model", "learning rate", "epoch", "");
        r.write_json(REPORT, &rep).unwrap();
        for e in 1..=4 {
            r.log(&serde_json::json!({"epoch": e, "lr": {"model": 0.001}}))
                .unwrap();
        }
        let html = build_report(&[d.path().join("r")], "t").unwrap();
        assert!(
            html.contains("learning rate: 0.0010 (the same at every epoch)"),
            "{html}"
        );
        assert!(!html.contains("data:image/png"), "no chart of a constant");
    }

    #[test]
    fn nan_lines_and_broken_images_are_said_not_hidden() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("r");
        let r = RunDir::create("train", Some(&dir), Reuse::Refuse, &serde_json::json!({})).unwrap();
        let mut rep = Report::new("train", "Image models", "x");
        rep.curve("valid.loss", "validation loss", "epoch", "");
        rep.figures.push(embedlab_train::Figure {
            file: "samples.png".into(),
            caption: "samples".into(),
        });
        r.write_json(REPORT, &rep).unwrap();
        drop(r);
        std::fs::write(
            dir.join("metrics.jsonl"),
            "{\"epoch\": 1, \"valid\": {\"loss\": 2.0}}\n{\"epoch\": 2, \"valid\": {\"loss\": NaN}, \"note\": \"NaN in a string\"}\n{\"epoch\": 3, \"valid\": {\"loss\": 1.5}}\nnot json\n",
        )
        .unwrap();
        std::fs::write(dir.join("samples.png"), b"\x89PNG garbage").unwrap();
        std::fs::write(dir.join("loose.png"), b"GIF89a").unwrap();
        let html = build_report(std::slice::from_ref(&dir), "t").unwrap();
        assert!(html.contains("line(s) 2 hold NaN"), "{html}");
        assert!(html.contains("line(s) 4 are not JSON"), "{html}");
        assert!(html.contains("samples.png: not a readable PNG"), "{html}");
        assert!(html.contains("loose.png: not a readable PNG"), "{html}");
        assert!(
            !html.contains("data:image/png;base64,iVBORw0KGgogZ2FyYmFnZQ"),
            "garbage embedded"
        );
        assert_eq!(
            non_finite_as_null(r#"{"a": NaN, "b": -Infinity, "s": "NaN \" Infinity"}"#),
            r#"{"a": null, "b": null, "s": "NaN \" Infinity"}"#
        );
    }
}
