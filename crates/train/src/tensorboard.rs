//! TensorBoard event files beside `metrics.jsonl`, so a run can be watched
//! with `tensorboard --logdir runs/` as users of the reference tools do.
//!
//! Every line a run folder logs ([`crate::RunDir::log`]) is also one event
//! of the folder's event file: its numbers become scalars (nested keys
//! joined by `/`, e.g. `train/main/loss`, `valid/bits_per_dim`; lines with
//! an `event` name are prefixed by it, `iteration/objective`), at the step
//! the line names (`epoch`, `iteration` or `step`; otherwise its position
//! in the log). When the log is rewritten (a resumed run, made to agree
//! with its checkpoint) the event file is rewritten too, under a newer name
//! (TensorBoard follows the newest file of a folder) and the older one is
//! removed, so each finished epoch is in the events exactly once. Image
//! grids are added by [`add_images`] in files of their own.
//!
//! The format is TensorFlow's: a file of TFRecords (length, masked CRC-32C
//! of the length, the serialised `Event`, its masked CRC-32C), whose first
//! event names the version `brain.Event:2`. The four messages needed are
//! declared here with `prost` (the only well-kept protobuf crate that needs
//! no code generator; the TensorBoard writer crates on crates.io are
//! unmaintained and pull in protobuf 2 and an old `image`).
use crate::error::{Result, TrainError};
use embedlab_data::atomic::write_atomic;
use prost::Message;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What every event file name holds (TensorBoard reads the files whose
/// name contains `tfevents`).
const PREFIX: &str = "events.out.tfevents.";
/// The suffix of the files that mirror `metrics.jsonl`.
const METRICS_SUFFIX: &str = ".embedlab";
/// The suffix of the files of image grids.
const IMAGES_SUFFIX: &str = ".images.embedlab";
/// The keys that give a line's step, in order.
const STEP_KEYS: [&str; 3] = ["epoch", "iteration", "step"];

#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(string, optional, tag = "3")]
    file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    summary: Option<Summary>,
}

#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    image: Option<Image>,
}

#[derive(Clone, PartialEq, Message)]
struct Image {
    #[prost(int32, tag = "1")]
    height: i32,
    #[prost(int32, tag = "2")]
    width: i32,
    /// 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    encoded_image_string: Vec<u8>,
}

/// The CRC-32C of `data`, masked as TFRecord files store it.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn version_event(wall: f64) -> Vec<u8> {
    record(
        &Event {
            wall_time: wall,
            file_version: Some("brain.Event:2".into()),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// A new file name, later than every event file already in `dir`
/// (TensorBoard reads a folder's files in the order of their names and
/// follows the last).
fn new_name(dir: &Path, suffix: &str) -> PathBuf {
    let micros = (now() * 1e6) as u64;
    let latest = event_files(dir, "")
        .last()
        .and_then(|p| {
            let n = p.file_name()?.to_str()?.strip_prefix(PREFIX)?.to_string();
            n.split('.').next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    dir.join(format!("{PREFIX}{:016}{suffix}", micros.max(latest + 1)))
}

/// The event files of `dir` whose name ends in `suffix`, in name order.
fn event_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(PREFIX) && n.ends_with(suffix) && !n.contains(".tmp")
            })
        })
        .filter(|p| suffix != METRICS_SUFFIX || !p.to_string_lossy().ends_with(IMAGES_SUFFIX))
        .collect();
    files.sort();
    files
}

/// The scalars of one logged line and its step (`None`: the line names
/// none, its position is used).
pub fn scalars_of(line: &Value) -> (Option<i64>, Vec<(String, f32)>) {
    let step = STEP_KEYS
        .iter()
        .find_map(|k| line.get(*k).and_then(Value::as_i64));
    let prefix = line
        .get("event")
        .and_then(Value::as_str)
        .map(|e| format!("{e}/"))
        .unwrap_or_default();
    let mut out = vec![];
    if let Value::Object(map) = line {
        for (k, v) in map {
            if k == "event" || k == "wall_time" || STEP_KEYS.contains(&k.as_str()) {
                continue;
            }
            leaves(&format!("{prefix}{k}"), v, &mut out);
        }
    }
    (step, out)
}

fn leaves(path: &str, v: &Value, out: &mut Vec<(String, f32)>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((path.to_string(), x as f32));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                leaves(&format!("{path}/{k}"), v, out);
            }
        }
        // Strings, booleans, nulls (NaN) and lists (hub tables, notes)
        // are not scalars.
        _ => {}
    }
}

/// The events of `lines`, the first at position `first`.
fn scalar_events(lines: &[Value], first: usize) -> Vec<u8> {
    let mut out = vec![];
    for (i, line) in lines.iter().enumerate() {
        let (step, values) = scalars_of(line);
        if values.is_empty() {
            continue;
        }
        let wall = line
            .get("wall_time")
            .and_then(Value::as_f64)
            .unwrap_or_else(now);
        let event = Event {
            wall_time: wall,
            step: step.unwrap_or((first + i) as i64),
            file_version: None,
            summary: Some(Summary {
                value: values
                    .into_iter()
                    .map(|(tag, x)| SummaryValue {
                        tag,
                        simple_value: Some(x),
                        image: None,
                    })
                    .collect(),
            }),
        };
        out.extend(record(&event.encode_to_vec()));
    }
    out
}

/// Replaces the folder's metrics event file by one holding `lines` (under
/// a newer name; the older files are removed once it is in place).
pub fn rewrite(dir: &Path, lines: &[Value]) -> Result<()> {
    let old = event_files(dir, METRICS_SUFFIX);
    let path = new_name(dir, METRICS_SUFFIX);
    let mut bytes = version_event(now());
    bytes.extend(scalar_events(lines, 0));
    write_atomic(&path, |w| w.write_all(&bytes))?;
    for p in old {
        std::fs::remove_file(&p).map_err(|e| TrainError::io(&p, e))?;
    }
    Ok(())
}

/// Appends `line`, the `position`-th line of the log, to the folder's
/// metrics event file (made if there is none).
pub fn append(dir: &Path, line: &Value, position: usize) -> Result<()> {
    let path = match event_files(dir, METRICS_SUFFIX).pop() {
        Some(p) => p,
        None => {
            let p = new_name(dir, METRICS_SUFFIX);
            write_atomic(&p, |w| w.write_all(&version_event(now())))?;
            p
        }
    };
    let bytes = scalar_events(std::slice::from_ref(line), position);
    if bytes.is_empty() {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| TrainError::io(&path, e))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_data())
        .map_err(|e| TrainError::io(&path, e))
}

/// Width, height and TensorBoard colour space of a PNG file's bytes.
fn png_shape(path: &Path, png: &[u8]) -> Result<(i32, i32, i32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 26 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return Err(TrainError::file(path, "not a PNG file"));
    }
    let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]) as i32;
    let colorspace = match png[25] {
        0 => 1,
        4 => 2,
        2 | 3 => 3,
        6 => 4,
        c => {
            return Err(TrainError::file(
                path,
                format!("PNG colour type {c} is not one of 0, 2, 3, 4, 6"),
            ))
        }
    };
    Ok((be(16), be(20), colorspace))
}

/// Adds PNG files as images (tag, file) at `step` in a new event file of
/// `dir`. A later call at the same step adds a new file too: TensorBoard
/// shows images by step, the newest last.
pub fn add_images(dir: &Path, step: i64, images: &[(String, PathBuf)]) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let wall = now();
    let mut bytes = version_event(wall);
    for (tag, file) in images {
        let png = std::fs::read(file).map_err(|e| TrainError::io(file, e))?;
        let (width, height, colorspace) = png_shape(file, &png)?;
        let event = Event {
            wall_time: wall,
            step,
            file_version: None,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: tag.clone(),
                    simple_value: None,
                    image: Some(Image {
                        height,
                        width,
                        colorspace,
                        encoded_image_string: png,
                    }),
                }],
            }),
        };
        bytes.extend(record(&event.encode_to_vec()));
    }
    let path = new_name(dir, IMAGES_SUFFIX);
    Ok(write_atomic(&path, |w| w.write_all(&bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Splits an event file into its records' data, checking every CRC.
    fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        let mut at = 0;
        while at < bytes.len() {
            let len = &bytes[at..at + 8];
            let crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(crc, masked_crc(len), "length CRC at byte {at}");
            let n = u64::from_le_bytes(len.try_into().unwrap()) as usize;
            let data = &bytes[at + 12..at + 12 + n];
            let crc = u32::from_le_bytes(bytes[at + 12 + n..at + 16 + n].try_into().unwrap());
            assert_eq!(crc, masked_crc(data), "data CRC at byte {at}");
            out.push(data.to_vec());
            at += 16 + n;
        }
        out
    }

    #[test]
    fn the_crc_is_castagnolis_masked_as_tensorflow_does() {
        // CRC-32C of "123456789" is 0xE3069283 (the check value of the
        // Castagnoli polynomial); masked: rotate right 15, add 0xa282ead8.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // (0xE3069283 >> 15 | 0xE3069283 << 17) + 0xa282ead8, worked out by hand.
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn a_line_gives_its_numbers_at_its_step() {
        let line = json!({"epoch": 3, "lr": {"main": 0.001}, "train": {"main": {"loss": 2.5}},
            "valid": {"nll": null}, "best": true, "events": ["x"], "wall_time": 5.0});
        let (step, mut s) = scalars_of(&line);
        s.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(step, Some(3));
        assert_eq!(
            s,
            vec![
                ("lr/main".to_string(), 0.001),
                ("train/main/loss".to_string(), 2.5)
            ]
        );
        let (step, s) =
            scalars_of(&json!({"event": "iteration", "iteration": 7, "objective": 0.5}));
        assert_eq!(
            (step, s),
            (Some(7), vec![("iteration/objective".to_string(), 0.5)])
        );
        assert_eq!(scalars_of(&json!({"event": "x", "note": "text"})).1, vec![]);
    }

    #[test]
    fn a_rewrite_replaces_the_file_and_appends_go_to_the_newest() {
        let d = tempfile::tempdir().unwrap();
        append(d.path(), &json!({"epoch": 1, "loss": 1.0}), 0).unwrap();
        append(d.path(), &json!({"epoch": 2, "loss": 0.5}), 1).unwrap();
        let first = event_files(d.path(), METRICS_SUFFIX);
        assert_eq!(first.len(), 1);
        assert_eq!(records(&std::fs::read(&first[0]).unwrap()).len(), 3);
        rewrite(d.path(), &[json!({"epoch": 1, "loss": 1.0})]).unwrap();
        append(d.path(), &json!({"epoch": 2, "loss": 0.25}), 1).unwrap();
        let now = event_files(d.path(), METRICS_SUFFIX);
        assert_eq!(now.len(), 1, "the older file is removed");
        assert!(now[0] > first[0], "the new file sorts after the old one");
        let recs = records(&std::fs::read(&now[0]).unwrap());
        assert_eq!(recs.len(), 3);
        let last = Event::decode(recs[2].as_slice()).unwrap();
        assert_eq!(last.step, 2);
        assert_eq!(last.summary.unwrap().value[0].simple_value, Some(0.25));
        let first_event = Event::decode(recs[0].as_slice()).unwrap();
        assert_eq!(first_event.file_version.as_deref(), Some("brain.Event:2"));
    }

    #[test]
    fn images_need_png_files() {
        let d = tempfile::tempdir().unwrap();
        let bad = d.path().join("grid.png");
        std::fs::write(&bad, b"not a png at all, really not").unwrap();
        let e = add_images(d.path(), 1, &[("samples".into(), bad.clone())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("grid.png") && e.contains("not a PNG"), "{e}");
        assert!(
            event_files(d.path(), IMAGES_SUFFIX).is_empty(),
            "nothing written"
        );
    }
}
