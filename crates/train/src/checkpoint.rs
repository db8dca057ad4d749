//! The one checkpoint format of every model family: one safetensors file
//! holding the model's variables (`model/<name>`: parameters and buffers),
//! each optimizer group's state (`opt/<group>/…`) and, in the file's
//! metadata, a JSON description (format version, the model's kind and
//! configuration, the training configuration and the trainer's state).
//! Being one file written atomically, a checkpoint is whole at every
//! instant: there is no pair of files to fall out of step.
//!
//! Weights alone (the best epoch's, `best.safetensors`) use the same file
//! format, with the epoch they come from in their metadata.
use crate::error::{Result, TrainError};
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST: &str = "best.safetensors";
/// The key of the JSON description in a file's safetensors metadata.
const META_KEY: &str = "embedlab";

/// A tensor's bytes on the CPU, as safetensors wants them.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn dtype_of(k: Kind) -> Option<Dtype> {
    Some(match k {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

fn kind_of(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn to_bytes(path: &Path, name: &str, t: &Tensor) -> Result<Bytes> {
    let t = t.detach().to_device(tch::Device::Cpu).contiguous();
    let dtype = dtype_of(t.kind()).ok_or_else(|| {
        TrainError::file(
            path,
            format!("tensor `{name}` has unsupported kind {:?}", t.kind()),
        )
    })?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)?;
    Ok(Bytes {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Writes named tensors and a JSON description as one safetensors file,
/// atomically (temporary file, fsync, rename).
pub fn write<M: Serialize>(path: &Path, meta: &M, named: &[(String, Tensor)]) -> Result<()> {
    let mut bytes = Vec::with_capacity(named.len());
    for (n, t) in named {
        bytes.push((n.clone(), to_bytes(path, n, t)?));
    }
    let json = serde_json::to_string(meta)
        .map_err(|e| TrainError::file(path, format!("cannot describe the checkpoint: {e}")))?;
    let info: HashMap<String, String> = [(META_KEY.to_string(), json)].into();
    let data =
        safetensors::tensor::serialize(bytes.iter().map(|(n, b)| (n.as_str(), b)), Some(info))
            .map_err(|e| TrainError::file(path, format!("cannot serialise: {e}")))?;
    embedlab_data::atomic::write_atomic(path, |w| w.write_all(&data))?;
    Ok(())
}

/// Reads a file written by [`write`]: its JSON description and its tensors.
pub fn read<M: DeserializeOwned>(path: &Path) -> Result<(M, HashMap<String, Tensor>)> {
    let buf = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| TrainError::file(path, format!("not a readable safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&buf)
        .map_err(|e| TrainError::file(path, format!("not a readable safetensors file: {e}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            TrainError::file(
                path,
                "has no embedlab description: not an embedlab checkpoint (or one written before format 2)",
            )
        })?;
    let meta: M = serde_json::from_str(json)
        .map_err(|e| TrainError::file(path, format!("its description does not parse: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            TrainError::file(
                path,
                format!("tensor `{name}` has unsupported type {:?}", view.dtype()),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        out.insert(name, t);
    }
    Ok((meta, out))
}

/// A VarStore's variables (parameters and buffers) in name order.
pub fn variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `model/<name>` for every variable of `vs`.
pub fn model_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    variables(vs)
        .into_iter()
        .map(|(n, t)| (format!("model/{n}"), t))
        .collect()
}

/// Copies tensors named `model/<var>` into a VarStore's variables,
/// checking that every variable is there with its shape.
pub fn copy_into(vs: &nn::VarStore, named: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let _g = tch::no_grad_guard();
    for (name, mut var) in variables(vs) {
        let key = format!("model/{name}");
        let t = named.get(&key).ok_or_else(|| {
            TrainError::file(
                path,
                format!("no tensor `{key}`: not this model's checkpoint"),
            )
        })?;
        if t.size() != var.size() {
            return Err(TrainError::file(
                path,
                format!(
                    "`{key}` has shape {:?}, the model expects {:?}",
                    t.size(),
                    var.size()
                ),
            ));
        }
        var.f_copy_(t)?;
    }
    Ok(())
}

/// What a weights file says of itself.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
pub struct WeightsMeta {
    pub format: u32,
    pub kind: String,
    pub model: serde_json::Value,
    /// The epoch (1-based) the weights come from.
    pub epoch: usize,
}

/// Saves a model's variables alone (e.g. the best epoch's).
pub fn save_weights(path: &Path, vs: &nn::VarStore, meta: &WeightsMeta) -> Result<()> {
    write(path, meta, &model_tensors(vs))
}

/// Loads weights saved by [`save_weights`] into `vs`, checking that they
/// were written for the same kind and configuration of model.
pub fn load_weights(
    vs: &nn::VarStore,
    path: &Path,
    kind: &str,
    model: &serde_json::Value,
) -> Result<WeightsMeta> {
    let (meta, named): (WeightsMeta, _) = read(path)?;
    if meta.kind != kind || &meta.model != model {
        return Err(TrainError::file(
            path,
            format!(
                "holds the weights of another model ({} {}), not of this {kind} run",
                meta.kind, meta.model
            ),
        ));
    }
    copy_into(vs, &named, path)?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn tensors_and_description_round_trip_in_one_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.safetensors");
        let named = vec![
            (
                "a".to_string(),
                Tensor::from_slice(&[1.5f32, -2.0]).reshape([2, 1]),
            ),
            ("b".to_string(), Tensor::from_slice(&[7i64])),
            ("c".to_string(), Tensor::from_slice(&[0.25f64])),
        ];
        write(&p, &serde_json::json!({"epoch": 3}), &named).unwrap();
        let (meta, back): (serde_json::Value, _) = read(&p).unwrap();
        assert_eq!(meta["epoch"], 3);
        assert!(back["a"].equal(&named[0].1) && back["a"].size() == [2, 1]);
        assert_eq!(back["b"].int64_value(&[0]), 7);
        assert_eq!(back["c"].kind(), Kind::Double);
        // No temporary file is left beside it.
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn torn_or_foreign_files_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.safetensors");
        write(
            &p,
            &1,
            &[(
                "a".to_string(),
                Tensor::ones([100], (Kind::Float, Device::Cpu)),
            )],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = read::<i32>(&p).unwrap_err().to_string();
        assert!(
            e.contains("c.safetensors") && e.contains("not a readable"),
            "{e}"
        );
        // A plain safetensors file without embedlab's description.
        Tensor::write_safetensors(&[("a", Tensor::ones([2], (Kind::Float, Device::Cpu)))], &p)
            .unwrap();
        let e = read::<i32>(&p).unwrap_err().to_string();
        assert!(e.contains("no embedlab description"), "{e}");
    }

    #[test]
    fn weights_load_only_into_the_model_they_were_written_for() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("best.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = vs.root().randn("w", &[3, 2], 0.0, 1.0);
        let meta = WeightsMeta {
            format: 2,
            kind: "vae".into(),
            model: serde_json::json!({"latent": 2}),
            epoch: 4,
        };
        save_weights(&p, &vs, &meta).unwrap();
        let other = nn::VarStore::new(Device::Cpu);
        let w = other.root().zeros("w", &[3, 2]);
        assert_eq!(
            load_weights(&other, &p, "vae", &meta.model).unwrap().epoch,
            4
        );
        assert!(w.equal(&vs.variables()["w"]));
        let e = load_weights(&other, &p, "gan", &meta.model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another model"), "{e}");
        let small = nn::VarStore::new(Device::Cpu);
        let _ = small.root().zeros("w", &[2, 2]);
        let e = load_weights(&small, &p, "vae", &meta.model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shape"), "{e}");
    }
}
