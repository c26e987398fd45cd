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

    /// Adds an f32 initializer with the tensor's values (any float dtype is converted).
    pub fn weight(&mut self, name: &str, t: &Tensor) -> candle_core::Result<String> {
        let t = t.to_dtype(DType::F32)?.contiguous()?;
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let dims = t.dims().iter().map(|&d| d as i64).collect();
        self.initializers.push(TensorProto {
            dims,
            data_type: DataType::Float as i32,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
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

    /// The finished model (opset 17, initializers inline as `raw_data`).
    pub fn into_model(self, name: &str, doc: &str) -> ModelProto {
        ModelProto {
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
        }
    }
}

/// Moves the weights' data (f32 initializers of 1 KiB or more) into one external file (`location`, relative to the model),
/// returning that file's bytes: needed when a model exceeds protobuf's 2 GB limit.
pub fn externalize(model: &mut ModelProto, location: &str) -> Vec<u8> {
    use candle_onnx::onnx::{tensor_proto::DataLocation, StringStringEntryProto};
    let mut data = Vec::new();
    if let Some(g) = model.graph.as_mut() {
        for t in &mut g.initializer {
            // Shape constants stay inline: ONNX Runtime's shape inference must read them.
            if t.data_type != DataType::Float as i32 || t.raw_data.len() < 1024 {
                continue;
            }
            // 64-byte alignment lets ONNX Runtime memory-map the tensors.
            while data.len() % 64 != 0 {
                data.push(0);
            }
            let offset = data.len();
            data.extend_from_slice(&t.raw_data);
            let entry = |k: &str, v: String| StringStringEntryProto {
                key: k.into(),
                value: v,
            };
            t.external_data = vec![
                entry("location", location.into()),
                entry("offset", offset.to_string()),
                entry("length", t.raw_data.len().to_string()),
            ];
            t.data_location = DataLocation::External as i32;
            t.raw_data = Vec::new();
        }
    }
    data
}
