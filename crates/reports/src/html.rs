//! The HTML report: one self-contained file (inline CSS, images as data
//! URIs, no external script, font or style sheet) describing any set of run
//! folders — configuration, metric tables with spreads over seeds, training
//! curves, image grids and maps, query-by-image results, word-translation
//! examples and precision tables — and, for a pipeline such as the demo,
//! which steps finished and which failed.
//!
//! Run folders are read as their files say (`config.json`, `report.json`,
//! `metrics.jsonl`, `examples.json`, PNGs), so a run that stopped before
//! writing its report still shows what it left.
use crate::plot::{line_chart_png, Series};
use crate::{ReportError, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One step of a pipeline (the demo writes them to `steps.json`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Step {
    pub name: String,
    /// "ok", "failed" or "skipped".
    pub status: String,
    pub seconds: f64,
    pub error: Option<String>,
    /// The run folder the step wrote, if any.
    pub run: Option<PathBuf>,
}

pub const STEPS_FILE: &str = "steps.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Supervised,
    Unsupervised,
    Autoencoder,
    Identity,
    Other,
}

struct Run {
    name: String,
    dir: PathBuf,
    kind: Kind,
    config: Option<Value>,
    report: Option<Value>,
    metrics: Vec<Value>,
    examples: Option<Value>,
    images: Vec<PathBuf>,
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn is_run(dir: &Path) -> bool {
    ["report.json", "config.json", "metrics.jsonl"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

fn load_run(dir: &Path) -> Run {
    let report = read_json(&dir.join("report.json"));
    let config = read_json(&dir.join("config.json"));
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let kind = match (&report, &config) {
        (Some(r), _) if r.get("codes").is_some() => Kind::Identity,
        (Some(r), _) if r.get("training").is_some() && r.get("test").is_some() => Kind::Autoencoder,
        (_, Some(c)) if c.get("model").is_some() && c.get("train").is_some() => Kind::Autoencoder,
        (Some(r), _) if r.get("iterations").is_some() && r.get("precision").is_some() => {
            Kind::Supervised
        }
        (Some(r), _) if r.get("precision").is_some() && r.get("method").is_some() => {
            Kind::Unsupervised
        }
        (_, Some(c)) if c.get("dict").is_some() && c.get("method").is_some() => Kind::Supervised,
        (_, Some(c)) if c.get("method").is_some() && c.get("emb").is_some() => Kind::Unsupervised,
        _ => Kind::Other,
    };
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "png"))
                .collect()
        })
        .unwrap_or_default();
    // Generation first, then reconstructions, paths, maps, queries.
    let rank = |p: &PathBuf| {
        let n = p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let order = [
            "samples",
            "class-samples",
            "reconstructions",
            "interpolations",
            "traversal",
            "latent-pca",
            "latent-tsne",
        ];
        (order.iter().position(|o| *o == n).unwrap_or(order.len()), n)
    };
    images.sort_by_key(|p| rank(p));
    Run {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        dir: dir.to_path_buf(),
        kind,
        config,
        report,
        metrics,
        examples: read_json(&dir.join("examples.json")),
        images,
    }
}

/// Finds the runs under the given folders: a folder that is a run, or the
/// runs one level below it (a demo's folder), in name order; and the steps
/// of any `steps.json` met on the way.
fn collect(inputs: &[PathBuf]) -> Result<(Vec<Run>, Vec<Step>)> {
    let mut runs = vec![];
    let mut steps = vec![];
    for d in inputs {
        if !d.is_dir() {
            return Err(ReportError::Invalid(format!(
                "{}: no such run folder",
                d.display()
            )));
        }
        if let Some(v) = read_json(&d.join(STEPS_FILE)) {
            if let Ok(s) = serde_json::from_value::<Vec<Step>>(v) {
                steps.extend(s);
            }
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
    Ok((runs, steps))
}

/// A table row of `width` cells: `cells`, then empty ones.
fn padded(mut cells: Vec<String>, width: usize) -> Vec<String> {
    cells.resize(width.max(cells.len()), String::new());
    cells
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

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

/// Path-like lookup: `get(v, "test.elbo")`.
fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// `(mean, sd, min, max)` of the values.
fn spread(v: &[f64]) -> (f64, f64, f64, f64) {
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

/// A configuration with what differs between repetitions (seeds, output
/// folders) removed: runs with equal signatures are repetitions.
fn signature(kind: Kind, config: &Option<Value>) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "seed" | "out" | "resume"))
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            v => v.clone(),
        }
    }
    format!(
        "{kind:?}:{}",
        config.as_ref().map(strip).unwrap_or(Value::Null)
    )
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

struct Html {
    body: String,
    toc: Vec<(String, String)>,
}

impl Html {
    fn section(&mut self, id: &str, title: &str) {
        self.toc.push((id.into(), title.into()));
        let _ = writeln!(self.body, "<h2 id=\"{id}\">{}</h2>", esc(title));
    }
    fn table(&mut self, head: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table><thead><tr>");
        for h in head {
            let _ = write!(self.body, "<th>{}</th>", esc(h));
        }
        self.body.push_str("</tr></thead><tbody>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                // Cells are escaped by the callers that build them.
                let _ = write!(self.body, "<td>{c}</td>");
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
    fn image(&mut self, png: &[u8], caption: &str) {
        self.figure(png, caption, "grid");
    }
    fn chart(&mut self, png: &[u8], caption: &str) {
        self.figure(png, caption, "chart");
    }
    fn config(&mut self, run: &Run) {
        if let Some(c) = &run.config {
            let mut rows = vec![];
            flatten("", c, &mut rows);
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|(k, v)| vec![esc(&k), esc(&v)])
                .collect();
            self.body
                .push_str("<details><summary>configuration</summary>");
            self.table(&["option", "value"], &rows);
            self.body.push_str("</details>\n");
        }
    }
}

/// Precision cells for one retrieval: P@1, P@5, P@10.
fn precision_cells(report: &Value, retrieval: &str) -> Vec<Option<f64>> {
    let p = report
        .get("precision")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter().find(|p| {
                p.get("retrieval").and_then(Value::as_str).is_some_and(|r| {
                    r == retrieval || (retrieval == "csls" && r.starts_with("csls"))
                })
            })
        });
    ["1", "5", "10"]
        .iter()
        .map(|k| p.and_then(|p| num(get(p, &format!("at.{k}")))))
        .collect()
}

fn queries(report: &Value) -> Option<f64> {
    report
        .get("precision")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|p| num(p.get("queries")))
}

fn translation_method(r: &Run) -> String {
    let rep = r.report.as_ref();
    let m = rep
        .and_then(|v| v.get("method"))
        .or_else(|| r.config.as_ref().and_then(|c| c.get("method")))
        .map(|m| {
            m.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| m.to_string())
        })
        .unwrap_or_default();
    let refine = r
        .config
        .as_ref()
        .and_then(|c| c.get("refine"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if refine > 0 {
        format!("{m} + {refine} refinements")
    } else {
        m
    }
}

fn word_translation(h: &mut Html, runs: &[&Run]) {
    h.section("word-translation", "Word translation");
    let mut rows = vec![];
    for r in runs {
        let Some(rep) = &r.report else {
            rows.push(padded(
                vec![
                    esc(&r.name),
                    esc(&translation_method(r)),
                    "did not finish".into(),
                ],
                9,
            ));
            continue;
        };
        let nn = precision_cells(rep, "nn");
        let cs = precision_cells(rep, "csls");
        let mut row = vec![
            esc(&r.name),
            esc(&translation_method(r)),
            fmt(queries(rep), 0),
        ];
        row.extend(nn.iter().chain(&cs).map(|v| fmt(*v, 2)));
        rows.push(row);
    }
    h.body.push_str("<p>Precision@k (%) on the test dictionary, nearest neighbour (NN) and CSLS retrieval.</p>\n");
    h.table(
        &[
            "run",
            "method",
            "test words",
            "NN P@1",
            "NN P@5",
            "NN P@10",
            "CSLS P@1",
            "CSLS P@5",
            "CSLS P@10",
        ],
        &rows,
    );
    spreads(
        h,
        runs,
        &[
            ("CSLS P@1", &|rep| precision_cells(rep, "csls")[0]),
            ("NN P@1", &|rep| precision_cells(rep, "nn")[0]),
        ],
    );
    for r in runs {
        let Some(ex) = r.examples.as_ref().and_then(Value::as_array) else {
            continue;
        };
        let mut rows = vec![];
        for e in ex {
            let gold: Vec<String> = e
                .get("gold")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|w| w.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let cands: Vec<String> = e
                .get("candidates")
                .and_then(Value::as_array)
                .map(|c| {
                    c.iter()
                        .filter_map(|p| {
                            let w = p.get(0)?.as_str()?;
                            let s = p.get(1)?.as_f64()?;
                            let cls = if gold.iter().any(|g| g == w) {
                                " class=\"hit\""
                            } else {
                                ""
                            };
                            Some(format!(
                                "<span{cls}>{}</span> <small>{s:.3}</small>",
                                esc(w)
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            rows.push(vec![
                format!(
                    "<b>{}</b>",
                    esc(e.get("word").and_then(Value::as_str).unwrap_or("?"))
                ),
                esc(&gold.join(", ")),
                cands.join(" · "),
            ]);
        }
        let _ = write!(h.body, "<details><summary>{}: {} translation examples (CSLS top-5; gold words green)</summary>", esc(&r.name), rows.len());
        h.table(
            &["source word", "gold translations", "candidates (score)"],
            &rows,
        );
        h.body.push_str("</details>\n");
    }
    for r in runs {
        curves(h, r);
    }
}

type Metric<'a> = (&'a str, &'a dyn Fn(&Value) -> Option<f64>);

/// For groups of repeated runs (equal configuration but the seed), the
/// mean ± sd (min–max) of each metric.
fn spreads(h: &mut Html, runs: &[&Run], metrics: &[Metric]) {
    let mut groups: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        if r.report.is_some() {
            groups
                .entry(signature(r.kind, &r.config))
                .or_default()
                .push(r);
        }
    }
    let mut rows = vec![];
    for members in groups.values().filter(|g| g.len() > 1) {
        let names: Vec<&str> = members.iter().map(|r| r.name.as_str()).collect();
        let mut row = vec![esc(&names.join(", ")), members.len().to_string()];
        for (_, f) in metrics {
            let vals: Vec<f64> = members
                .iter()
                .filter_map(|r| f(r.report.as_ref()?))
                .collect();
            row.push(if vals.is_empty() {
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
        let mut head = vec!["runs", "n"];
        head.extend(metrics.iter().map(|m| m.0));
        h.table(&head, &rows);
    }
}

/// Training curves from `metrics.jsonl`: every numeric field (nested ones
/// as `train.loss`) against the epoch or iteration, losses and other
/// quantities on separate charts.
fn curves(h: &mut Html, r: &Run) {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in &r.metrics {
        let Some(x) = num(line.get("epoch")).or_else(|| num(line.get("iteration"))) else {
            continue;
        };
        let mut fields = vec![];
        flatten("", line, &mut fields);
        for (k, v) in fields {
            if matches!(k.as_str(), "epoch" | "iteration" | "lr" | "best")
                || k.contains("seconds")
                || k.contains("per_second")
            {
                continue;
            }
            if let Ok(y) = v.parse::<f64>() {
                series.entry(k).or_default().push((x, y));
            }
        }
    }
    series.retain(|_, p| p.len() >= 2);
    if series.is_empty() {
        return;
    }
    let xl = if r.metrics.iter().any(|l| l.get("epoch").is_some()) {
        "epoch"
    } else {
        "iteration"
    };
    // Losses share one chart (same units); every other quantity gets its own
    // (their scales differ: a criterion near 1, dictionary sizes in thousands).
    let (loss, other): (Vec<_>, Vec<_>) =
        series.into_iter().partition(|(k, _)| k.ends_with("loss"));
    let mut charts: Vec<(String, Vec<Series>)> = vec![];
    if !loss.is_empty() {
        charts.push((
            "loss".into(),
            loss.into_iter()
                .take(6)
                .map(|(name, points)| Series { name, points })
                .collect(),
        ));
    }
    for (name, points) in other.into_iter().take(4) {
        charts.push((name.clone(), vec![Series { name, points }]));
    }
    for (title, s) in charts {
        if let Ok(png) = line_chart_png(&s, &format!("{} — {title}", r.name), xl, &title) {
            h.chart(&png, &format!("{}: {title} by {xl}", r.name));
        }
    }
}

fn autoencoders(h: &mut Html, runs: &[&Run]) {
    h.section("autoencoders", "Autoencoders");
    let mut rows = vec![];
    for r in runs {
        let name = esc(&r.name);
        let model = r
            .report
            .as_ref()
            .and_then(|v| v.get("model"))
            .or_else(|| r.config.as_ref().and_then(|c| get(c, "model.family")))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_uppercase();
        let Some(rep) = &r.report else {
            rows.push(padded(
                vec![
                    name,
                    esc(&model),
                    "did not finish".into(),
                    format!("{} epochs logged", r.metrics.len()),
                ],
                9,
            ));
            continue;
        };
        let pct = |p: &str| num(get(rep, p)).map(|v| 100.0 * v);
        rows.push(vec![
            name,
            esc(&model),
            esc(rep.get("dataset").and_then(Value::as_str).unwrap_or("")),
            format!(
                "{} ({})",
                fmt(num(get(rep, "training.epochs_done")), 0),
                fmt(num(get(rep, "training.best_epoch")), 0)
            ),
            fmt(num(get(rep, "test.elbo")), 2),
            match num(get(rep, "test.nll_iwae")) {
                Some(v) => format!(
                    "{v:.2} <small>(k={})</small>",
                    fmt(num(get(rep, "test.iwae_k")), 0)
                ),
                None => "–".into(),
            },
            fmt(num(get(rep, "test.reconstruction_nll")), 2),
            format!(
                "{} → {}",
                fmt(pct("probe.pixels.test_accuracy"), 1),
                fmt(pct("probe.codes.test_accuracy"), 1)
            ),
            format!(
                "{} → {}",
                fmt(pct("query.pixel_label_precision"), 1),
                fmt(pct("query.latent_label_precision"), 1)
            ),
        ]);
    }
    h.body.push_str("<p>Test numbers in nats per image (ELBO: lower bound on log p(x); NLL: importance-weighted bound on −log p(x), conditional on the label for CAE/CVAE). Probe: logistic-regression test accuracy (%) on raw pixels → on codes. k-NN: share (%) of a test image's nearest training images of its class, pixel space → latent space.</p>\n");
    h.table(
        &[
            "run",
            "model",
            "data",
            "epochs (best)",
            "test ELBO",
            "IWAE NLL",
            "rec. −log p(x|z)",
            "probe",
            "same-class k-NN",
        ],
        &rows,
    );
    spreads(
        h,
        runs,
        &[
            ("test ELBO", &|r| num(get(r, "test.elbo"))),
            ("IWAE NLL", &|r| num(get(r, "test.nll_iwae"))),
            ("rec.", &|r| num(get(r, "test.reconstruction_nll"))),
        ],
    );
    for r in runs {
        let _ = writeln!(h.body, "<h3>{}</h3>", esc(&r.name));
        if r.report.is_none() {
            h.body.push_str("<p class=\"fail\">This run has no report.json: it stopped before its evaluation. What it logged is below.</p>\n");
        }
        h.config(r);
        curves(h, r);
        images(h, r);
    }
}

fn images(h: &mut Html, r: &Run) {
    for p in &r.images {
        if let Ok(png) = std::fs::read(p) {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let caption = match stem.as_str() {
                "samples" => "samples (VAE: prior; AE: Gaussian fitted to its codes)".to_string(),
                "class-samples" => "class-conditional samples, one row a class".to_string(),
                "reconstructions" => "test images (odd rows) and reconstructions (even rows)".to_string(),
                "interpolations" => "latent interpolations, each with the pixel cross-fade under it".to_string(),
                "traversal" => "traversals of the most active latent dimensions (one a row, −3σ … +3σ)".to_string(),
                "latent-pca" => "test codes, first two principal components".to_string(),
                "latent-tsne" => "test codes, t-SNE".to_string(),
                s if s.starts_with("query-") => format!("query by image {}: nearest training images in latent space (top) and pixel space (bottom)", &s[6..]),
                s => s.to_string(),
            };
            h.image(&png, &format!("{}: {caption}", r.name));
        }
    }
}

fn identity(h: &mut Html, runs: &[&Run]) {
    h.section("identity", "The 8-3-8 identity network");
    for r in runs {
        let Some(rep) = &r.report else { continue };
        let codes = rep
            .get("codes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Vec<String>> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v: Vec<f64> = c
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let bits: String = v
                    .iter()
                    .map(|x| if *x >= 0.5 { '1' } else { '0' })
                    .collect();
                vec![
                    format!("{i}"),
                    v.iter()
                        .map(|x| format!("{x:.3}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    bits,
                ]
            })
            .collect();
        let _ = writeln!(
            h.body,
            "<p>{}: {} of 8 inputs reconstructed.</p>",
            esc(&r.name),
            fmt(num(rep.get("correct")), 0)
        );
        h.table(&["input (one-hot position)", "hidden units", "code"], &rows);
    }
}

fn others(h: &mut Html, runs: &[&Run]) {
    h.section("other-runs", "Other runs");
    for r in runs {
        let _ = writeln!(
            h.body,
            "<h3>{}</h3><p>{}</p>",
            esc(&r.name),
            esc(&r.dir.display().to_string())
        );
        h.config(r);
        curves(h, r);
        images(h, r);
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.8em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}\
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}tbody tr:nth-child(even){background:#fafafa}figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figure.chart img{width:480px}\
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555;max-width:720px}\
.hit{color:#1a7f37;font-weight:bold}.fail{color:#b00020}.ok{color:#1a7f37}details{margin:.5em 0}summary{cursor:pointer;color:#0b5394}\
nav a{margin-right:1em}#render-check{font-size:.8em;color:#777;margin-top:3em}";

/// Counts, after loading, the images that decoded and the tables that were
/// laid out; the result goes on `<body>` (data-images-ok, data-images,
/// data-tables-ok, data-tables) and in the page footer.
const CHECK: &str = "window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);\
var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;\
var tb=Array.prototype.slice.call(document.querySelectorAll('table'));\
var ds=Array.prototype.slice.call(document.querySelectorAll('details'));var was=ds.map(function(d){return d.open;});\
ds.forEach(function(d){d.open=true;});\
var tok=tb.filter(function(t){return t.rows.length>0&&t.getBoundingClientRect().width>0;}).length;\
ds.forEach(function(d,i){d.open=was[i];});\
var b=document.body;b.setAttribute('data-images-ok',ok);b.setAttribute('data-images',im.length);\
b.setAttribute('data-tables-ok',tok);b.setAttribute('data-tables',tb.length);\
document.getElementById('render-check').textContent=ok+' of '+im.length+' images and '+tok+' of '+tb.length+' tables rendered.';});";

/// Builds the report of `inputs` (run folders, or folders of runs).
pub fn build_report(inputs: &[PathBuf], title: &str) -> Result<String> {
    let (runs, steps) = collect(inputs)?;
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
        h.table(&["step", "status", "seconds", "run folder", "error"], &rows);
    }
    let of = |k: Kind| -> Vec<&Run> { runs.iter().filter(|r| r.kind == k).collect() };
    let wt: Vec<&Run> = runs
        .iter()
        .filter(|r| matches!(r.kind, Kind::Supervised | Kind::Unsupervised))
        .collect();
    if !wt.is_empty() {
        word_translation(&mut h, &wt);
    }
    let ae = of(Kind::Autoencoder);
    if !ae.is_empty() {
        autoencoders(&mut h, &ae);
    }
    let id = of(Kind::Identity);
    if !id.is_empty() {
        identity(&mut h, &id);
    }
    let other = of(Kind::Other);
    if !other.is_empty() {
        others(&mut h, &other);
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

    fn write(p: &Path, v: &Value) {
        std::fs::write(p, serde_json::to_string(v).unwrap()).unwrap();
    }

    #[test]
    fn report_of_runs_with_spreads_failures_and_unfinished_runs() {
        let d = tempfile::tempdir().unwrap();
        for (i, p1) in [(1, 40.0), (2, 44.0)] {
            let r = d.path().join(format!("en-fr-seed{i}"));
            std::fs::create_dir(&r).unwrap();
            write(
                &r.join("config.json"),
                &serde_json::json!({"dict": "d", "method": "procrustes", "refine": 0, "seed": i}),
            );
            write(
                &r.join("report.json"),
                &serde_json::json!({"method": "procrustes", "iterations": [],
                "precision": [{"retrieval": "csls", "at": {"1": p1, "5": 60.0, "10": 70.0}, "queries": 100},
                              {"retrieval": "nn", "at": {"1": 30.0, "5": 50.0, "10": 60.0}, "queries": 100}]}),
            );
            write(
                &r.join("examples.json"),
                &serde_json::json!([{"word": "cat<", "gold": ["chat"], "candidates": [["chat", 0.9], ["chien", 0.5]], "correct_at_1": true}]),
            );
        }
        let ae = d.path().join("vae");
        std::fs::create_dir(&ae).unwrap();
        write(
            &ae.join("config.json"),
            &serde_json::json!({"model": {"family": "vae"}, "train": {"seed": 0}}),
        );
        std::fs::write(ae.join("metrics.jsonl"), "{\"epoch\":1,\"train\":{\"loss\":300.0},\"valid\":{\"loss\":280.0}}\n{\"epoch\":2,\"train\":{\"loss\":250.0},\"valid\":{\"loss\":240.0}}\n").unwrap();
        let steps = vec![
            Step {
                name: "en-fr".into(),
                status: "ok".into(),
                seconds: 1.0,
                error: None,
                run: None,
            },
            Step {
                name: "vae".into(),
                status: "failed".into(),
                seconds: 2.0,
                error: Some("loss became NaN".into()),
                run: Some(ae.clone()),
            },
        ];
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
        assert!(
            html.contains("cat&lt;") && html.contains("class=\"hit\">chat"),
            "examples, escaped"
        );
        assert!(
            html.contains("did not finish") && html.contains("no report.json"),
            "unfinished run"
        );
        assert!(html.contains("data:image/png;base64,"), "curve embedded");
        for bad in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
            assert!(!html.contains(bad), "external reference {bad}");
        }
        assert!(build_report(&[d.path().join("nope")], "x").is_err());
    }
}
