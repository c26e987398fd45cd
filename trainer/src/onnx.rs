//! A small builder over candle-onnx's ONNX protobuf types, used by each exportable module to emit
//! its graph beside its candle `forward` (opset 17, the subset candle-onnx and ONNX Runtime agree
//! on; see `shared/STACK.md`).
//!
//! Node outputs are named `{scope}/{Op}_{n}`; weights keep the model's own tensor names.

use candle_core::{DType, Tensor};
use candle_onnx::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Default-domain opset of every exported graph.
pub const OPSET: i64 = 17;
/// IR version matching opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// A graph under construction: nodes in topological order plus initializers.
#[derive(Default)]
pub struct OnnxGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    weights: Vec<Weight>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    counter: usize,
}

/// An integer attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A tensor attribute (e.g. `ConstantOfShape`'s value).
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..Default::default()
    }
}

/// A one-element f32 tensor proto.
pub fn f32_value(v: f32) -> TensorProto {
    TensorProto {
        dims: vec![1],
        data_type: DataType::Float as i32,
        raw_data: v.to_le_bytes().to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(n) => tensor_shape_proto::dimension::Value::DimValue(n),
                Err(_) => tensor_shape_proto::dimension::Value::DimParam((*d).to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl OnnxGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an int64 graph input with named (dynamic) or numeric dimensions.
    pub fn input_i64(&mut self, name: &str, dims: &[&str]) -> String {
        self.inputs.push(value_info(name, DataType::Int64, dims));
        name.to_string()
    }

    /// Exposes `value` as an f32 graph output called `name` (through an Identity node).
    pub fn output_f32(&mut self, value: &str, name: &str, dims: &[&str]) {
        self.nodes.push(NodeProto {
            input: vec![value.into()],
            output: vec![name.into()],
            name: format!("output/{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, DataType::Float, dims));
    }

    /// Adds an f32 initializer with the tensor's values (any float dtype is converted). The
    /// tensor is kept by reference (no copy) until the model is written.
    pub fn weight(&mut self, name: &str, t: &Tensor) -> candle_core::Result<String> {
        self.weights.push(Weight {
            name: name.into(),
            tensor: t.clone(),
            low_rank: None,
            int8_scale: None,
        });
        Ok(name.to_string())
    }

    /// Adds the initializer `name` = `base + scale · left · right` (a LoRA-adapted weight, merged
    /// when written, so no merged copy of every layer is held at once).
    pub fn weight_plus_low_rank(
        &mut self,
        name: &str,
        base: &Tensor,
        (left, right, scale): (&Tensor, &Tensor, f64),
    ) -> candle_core::Result<String> {
        self.weights.push(Weight {
            name: name.into(),
            tensor: base.clone(),
            low_rank: Some((left.clone(), right.clone(), scale)),
            int8_scale: None,
        });
        Ok(name.to_string())
    }

    /// Adds the transpose of a `[out, in]` weight as an `[in, out]` initializer `{name}.T`, so a
    /// linear layer is one `MatMul`.
    pub fn weight_t(&mut self, name: &str, w: &Tensor) -> candle_core::Result<String> {
        self.weight(&format!("{name}.T"), &w.t()?)
    }

    /// Adds a constant initializer once; later calls with the same name reuse it.
    fn constant(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        match self.initializers.iter().find(|i| i.name == name) {
            Some(existing) => assert!(
                *existing == t,
                "constant {name} defined twice with different values"
            ),
            None => self.initializers.push(t),
        }
        name
    }

    /// Adds a 1-D int64 constant.
    pub fn ints(&mut self, name: &str, v: &[i64]) -> String {
        self.constant(TensorProto {
            dims: vec![v.len() as i64],
            data_type: DataType::Int64 as i32,
            name: name.into(),
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        })
    }

    /// Adds a scalar (rank-0) int64 constant.
    pub fn int_scalar(&mut self, name: &str, v: i64) -> String {
        self.constant(TensorProto {
            dims: vec![],
            data_type: DataType::Int64 as i32,
            name: name.into(),
            raw_data: v.to_le_bytes().to_vec(),
            ..Default::default()
        })
    }

    /// Adds a scalar (rank-0) f32 constant.
    pub fn f32_scalar(&mut self, name: &str, v: f32) -> String {
        self.constant(TensorProto {
            dims: vec![],
            data_type: DataType::Float as i32,
            name: name.into(),
            raw_data: v.to_le_bytes().to_vec(),
            ..Default::default()
        })
    }

    /// Appends a single-output node and returns its output name.
    pub fn op(
        &mut self,
        scope: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        self.counter += 1;
        let out = format!("{scope}/{op}_{}", self.counter);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// `x @ w` for a `[.., in]` activation and an `[in, out]` initializer, plus an optional bias.
    pub fn linear(&mut self, scope: &str, x: &str, w_t: &str, bias: Option<&str>) -> String {
        let y = self.op(scope, "MatMul", &[x, w_t], vec![]);
        match bias {
            Some(b) => self.op(scope, "Add", &[&y, b], vec![]),
            None => y,
        }
    }

    /// The finished model (opset 17); its weights are still the model's tensors.
    pub fn into_model(self, name: &str, doc: &str) -> OnnxModel {
        OnnxModel {
            proto: ModelProto {
                ir_version: IR_VERSION,
                opset_import: vec![OperatorSetIdProto {
                    domain: String::new(),
                    version: OPSET,
                }],
                producer_name: "vrf-trainer".into(),
                producer_version: env!("CARGO_PKG_VERSION").into(),
                doc_string: doc.into(),
                graph: Some(GraphProto {
                    node: self.nodes,
                    name: name.into(),
                    initializer: self.initializers,
                    input: self.inputs,
                    output: self.outputs,
                    ..Default::default()
                }),
                ..Default::default()
            },
            weights: self.weights,
        }
    }
}

/// One weight initializer, converted to bytes only when the model is written.
#[derive(Clone)]
pub struct Weight {
    /// Initializer name.
    pub name: String,
    /// The values (any float dtype, any layout).
    pub tensor: Tensor,
    /// A low-rank term `(left, right, scale)` added when written: `tensor + scale·left·right`.
    pub low_rank: Option<(Tensor, Tensor, f64)>,
    /// Per-column scales `[out]` when stored as symmetric int8 (`round(w / scale)`), else f32.
    pub int8_scale: Option<Tensor>,
}

impl Weight {
    /// The stored element type.
    fn data_type(&self) -> DataType {
        if self.int8_scale.is_some() {
            DataType::Int8
        } else {
            DataType::Float
        }
    }

    /// Bytes of the stored initializer.
    pub fn stored_bytes(&self) -> usize {
        let n = self.tensor.elem_count();
        if self.int8_scale.is_some() {
            n
        } else {
            4 * n
        }
    }

    /// The weight's f32 values (low-rank term added), detached from any gradient graph.
    pub fn values(&self) -> candle_core::Result<Tensor> {
        let t = self.tensor.detach().to_dtype(DType::F32)?;
        match &self.low_rank {
            None => Ok(t),
            Some((l, r, scale)) => {
                let (l, r) = (
                    l.detach().to_dtype(DType::F32)?,
                    r.detach().to_dtype(DType::F32)?,
                );
                t + (l.matmul(&r)? * *scale)?
            }
        }
    }

    /// The stored values as a contiguous f32 CPU tensor: the weight itself when it already is
    /// one (no copy), else one converted copy; int8 weights as their rounded, clamped levels.
    fn stored_values(&self) -> candle_core::Result<Tensor> {
        let t = self.values()?;
        let t = match &self.int8_scale {
            None => t,
            // [in, out] / [out]: each output column has its own scale.
            Some(scale) => t.broadcast_div(scale)?.round()?.clamp(-127f32, 127f32)?,
        };
        t.to_device(&candle_core::Device::Cpu)?.contiguous()
    }

    /// Writes the stored little-endian bytes to `w` in pieces, reading the stored values in
    /// place; a weight that cannot be converted is an error naming it.
    fn write_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let values = self
            .stored_values()
            .map_err(|e| std::io::Error::other(format!("converting weight {}: {e}", self.name)))?;
        let (storage, layout) = values.storage_and_layout();
        let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(all)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        else {
            return Err(std::io::Error::other(format!(
                "weight {}: expected contiguous f32 CPU values",
                self.name
            )));
        };
        let mut buf = Vec::with_capacity(1 << 18);
        for chunk in all[start..end].chunks(1 << 16) {
            buf.clear();
            if self.int8_scale.is_some() {
                buf.extend(chunk.iter().map(|&x| (x as i8) as u8));
            } else {
                buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            }
            w.write_all(&buf)?;
        }
        Ok(())
    }

    /// The initializer proto with its data inline.
    fn inline(&self) -> Result<TensorProto, ExternalDataError> {
        let mut raw_data = Vec::with_capacity(self.stored_bytes());
        // Writing into memory fails only where the weight cannot be converted.
        self.write_to(&mut raw_data)
            .map_err(|e| ExternalDataError::Weight(e.to_string()))?;
        Ok(TensorProto {
            dims: self.tensor.dims().iter().map(|&d| d as i64).collect(),
            data_type: self.data_type() as i32,
            name: self.name.clone(),
            raw_data,
            ..Default::default()
        })
    }
}

/// An exported graph: the protobuf without its weights, and the weights as tensors, so a
/// multi-GB model is written one tensor at a time instead of being copied whole into protobuf.
pub struct OnnxModel {
    /// Nodes, inputs, outputs and small constants.
    pub proto: ModelProto,
    /// The weight initializers, in the order they were added.
    pub weights: Vec<Weight>,
}

/// Alignment of each tensor in the external-data file: a page, so ONNX Runtime can map it.
const EXTERNAL_ALIGN: usize = 4096;

impl OnnxModel {
    /// Bytes the weights take once written.
    pub fn weight_bytes(&self) -> usize {
        self.weights.iter().map(Weight::stored_bytes).sum()
    }

    /// The whole model with every weight inline (holds a copy of all weights: small models, or
    /// evaluation with candle-onnx).
    pub fn to_proto(&self) -> Result<ModelProto, ExternalDataError> {
        let mut proto = self.proto.clone();
        if let Some(g) = proto.graph.as_mut() {
            for w in &self.weights {
                g.initializer.push(w.inline()?);
            }
        }
        Ok(proto)
    }

    /// Writes the weights into `data` (atomically, one tensor at a time, each page-aligned) and
    /// returns the graph proto that points at it as `location` (relative to the graph file).
    /// Needed above protobuf's 2 GB limit, and what keeps export memory near the model's size.
    pub fn write_external(
        &self,
        data: &std::path::Path,
        location: &str,
    ) -> Result<ModelProto, ExternalDataError> {
        use candle_onnx::onnx::{tensor_proto::DataLocation, StringStringEntryProto};
        let mut entries = Vec::with_capacity(self.weights.len());
        vrf_format::fsutil::write_atomic_with(data, |w| {
            let mut offset = 0usize;
            for weight in &self.weights {
                let pad = offset.next_multiple_of(EXTERNAL_ALIGN) - offset;
                w.write_all(&vec![0u8; pad])?;
                offset += pad;
                weight.write_to(w)?;
                let len = weight.stored_bytes();
                entries.push((offset, len));
                offset += len;
            }
            Ok(())
        })
        .map_err(|cause| ExternalDataError::Io {
            path: data.to_path_buf(),
            cause,
        })?;
        let mut proto = self.proto.clone();
        if let Some(g) = proto.graph.as_mut() {
            for (weight, (offset, len)) in self.weights.iter().zip(entries) {
                let entry = |k: &str, v: String| StringStringEntryProto {
                    key: k.into(),
                    value: v,
                };
                g.initializer.push(TensorProto {
                    dims: weight.tensor.dims().iter().map(|&d| d as i64).collect(),
                    data_type: weight.data_type() as i32,
                    name: weight.name.clone(),
                    external_data: vec![
                        entry("location", location.into()),
                        entry("offset", offset.to_string()),
                        entry("length", len.to_string()),
                    ],
                    data_location: DataLocation::External as i32,
                    ..Default::default()
                });
            }
        }
        Ok(proto)
    }
}

/// Why writing a model's external data failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalDataError {
    /// Writing the file failed.
    #[error("writing {}: {cause}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A weight could not be converted (the message names it).
    #[error("{0}")]
    Weight(String),
}
