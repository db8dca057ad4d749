//! The one checkpoint format of every model family: a safetensors file of
//! the model's parameters (`model/<name>`), the optimiser's state
//! (`adam/...`) and the epoch count (`meta/epochs_done`), plus a JSON file
//! with the configuration and the training bookkeeping. Both are written
//! atomically; the epoch count in both must agree when loading.
use crate::error::{ModelError, Result};
use embedlab_data::atomic::{read_safetensors, write_json_atomic, write_safetensors_atomic};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Tensor};

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const CHECKPOINT_META: &str = "checkpoint.json";
pub const BEST: &str = "best.safetensors";

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CheckpointMeta {
    pub format: u32,
    /// The model's configuration (family-specific).
    pub model: serde_json::Value,
    /// The training configuration.
    pub train: serde_json::Value,
    pub epochs_done: usize,
    /// Best validation loss so far and the epoch (1-based) it came from.
    pub best: Option<(usize, f64)>,
    /// Epochs since the best one (early stopping).
    pub bad_epochs: usize,
}

/// Writes the checkpoint: tensors first, then the JSON that points at them.
pub fn save(
    dir: &Path,
    meta: &CheckpointMeta,
    params: &[(String, Tensor)],
    optimiser: Vec<(String, Tensor)>,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = params
        .iter()
        .map(|(n, t)| (format!("model/{n}"), t.detach()))
        .collect();
    named.extend(optimiser);
    named.push((
        "meta/epochs_done".into(),
        Tensor::from_slice(&[meta.epochs_done as i64]),
    ));
    write_safetensors_atomic(&dir.join(CHECKPOINT), named)?;
    write_json_atomic(&dir.join(CHECKPOINT_META), meta)?;
    Ok(())
}

/// Reads a checkpoint folder: its metadata and its tensors by name.
pub fn load(dir: &Path) -> Result<(CheckpointMeta, HashMap<String, Tensor>)> {
    let mp = dir.join(CHECKPOINT_META);
    let text = std::fs::read_to_string(&mp)
        .map_err(|e| ModelError::checkpoint(&mp, format!("cannot read: {e}")))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| ModelError::checkpoint(&mp, format!("not a checkpoint description: {e}")))?;
    let tp = dir.join(CHECKPOINT);
    let named: HashMap<String, Tensor> = read_safetensors(&tp)?.into_iter().collect();
    let epochs = named
        .get("meta/epochs_done")
        .map(|t| t.int64_value(&[0]) as usize);
    if epochs != Some(meta.epochs_done) {
        return Err(ModelError::checkpoint(
            &tp,
            format!(
                "holds epoch {epochs:?} but {} says {}: the pair is inconsistent",
                CHECKPOINT_META, meta.epochs_done
            ),
        ));
    }
    Ok((meta, named))
}

/// Copies tensors named `<prefix><param>` into a VarStore's parameters,
/// checking that every parameter is there with its shape.
pub fn copy_into(
    vs: &nn::VarStore,
    named: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    let _g = tch::no_grad_guard();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut var) in vars {
        let key = format!("{prefix}{name}");
        let t = named.get(&key).ok_or_else(|| {
            ModelError::checkpoint(
                path,
                format!("no tensor `{key}`: not this model's checkpoint"),
            )
        })?;
        if t.size() != var.size() {
            return Err(ModelError::checkpoint(
                path,
                format!(
                    "`{key}` has shape {:?}, the model expects {:?}",
                    t.size(),
                    var.size()
                ),
            ));
        }
        var.copy_(t);
    }
    Ok(())
}

/// Saves a model's weights alone (e.g. the best epoch's).
pub fn save_weights(path: &Path, params: &[(String, Tensor)]) -> Result<()> {
    let named = params
        .iter()
        .map(|(n, t)| (format!("model/{n}"), t.detach()))
        .collect();
    Ok(write_safetensors_atomic(path, named)?)
}

/// Loads weights saved by [`save_weights`] (or a checkpoint's) into `vs`.
pub fn load_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let named: HashMap<String, Tensor> = read_safetensors(path)?.into_iter().collect();
    copy_into(vs, &named, "model/", path)
}
