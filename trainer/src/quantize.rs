//! `vrf-trainer export --quantize int8`: the backbone's linear layers with int8 weights, in the
//! graph pattern ONNX Runtime's own dynamic quantization writes (and fuses into
//! `DynamicQuantizeMatMul`, run by its u8×s8 integer kernels):
//!
//! ```text
//! x ─ DynamicQuantizeLinear ─┬ x_q ─┐
//!                            ├ x_zp ┼ MatMulInteger(x_q, W_q, x_zp) ─ Cast(float) ─ Mul ─ y
//!                            └ x_s ── Mul(x_s, w_s) ─────────────────────────────────┘
//! ```
//!
//! Weights are symmetric per output column (`W_q = round(W / w_s)`, `w_s = max|W[:, j]| / 127`);
//! activations are asymmetric uint8 per tensor, computed at run time. The token embeddings
//! (a `Gather`) and the small basis-reward heads stay f32.

use std::collections::HashMap;

use candle_core::DType;
use candle_onnx::onnx::{tensor_proto::DataType, NodeProto, TensorProto};

use crate::onnx::{attr_int, OnnxModel};

/// How `export` stores the backbone's weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Quantize {
    /// f32 weights (exact).
    #[default]
    None,
    /// int8 linear-layer weights, per-column scales; activations quantized at run time.
    Int8,
}

/// Whether a weight stays f32 under int8 quantization: everything but the decoder layers'
/// projections (`{..}.weight.T` initializers that feed a `MatMul`).
fn keeps_f32(name: &str) -> bool {
    name.starts_with("heads.") || !name.ends_with(".weight.T")
}

/// Rewrites every `MatMul` on a quantizable `[in, out]` weight into the int8 pattern above and
/// marks the weight for int8 storage; returns how many were rewritten.
pub fn quantize_int8(model: &mut OnnxModel) -> candle_core::Result<usize> {
    let index: HashMap<String, usize> = model
        .weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w.name.clone(), i))
        .collect();
    let Some(graph) = model.proto.graph.as_mut() else {
        return Ok(0);
    };
    // Only a weight whose one use is a MatMul's right operand may become int8: any other reader
    // (a second MatMul, a Gather, a graph output) would receive int8 data it cannot take.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for name in graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(graph.output.iter().map(|o| &o.name))
    {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    let single_use: std::collections::HashSet<String> = uses
        .into_iter()
        .filter(|&(_, n)| n == 1)
        .map(|(name, _)| name.to_string())
        .collect();
    let mut nodes = Vec::with_capacity(graph.node.len() * 2);
    // One DynamicQuantizeLinear per activation, shared by the projections reading it (q, k, v;
    // gate, up), as ONNX Runtime's quantizer does.
    let mut quantized_inputs: HashMap<String, [String; 3]> = HashMap::new();
    let mut count = 0;
    for node in std::mem::take(&mut graph.node) {
        let target = (node.op_type == "MatMul" && node.input.len() == 2)
            .then(|| index.get(&node.input[1]).copied())
            .flatten()
            .filter(|&i| {
                let w = &model.weights[i];
                !keeps_f32(&w.name) && w.tensor.rank() == 2 && single_use.contains(&w.name)
            });
        let Some(wi) = target else {
            nodes.push(node);
            continue;
        };
        let (x, out) = (node.input[0].clone(), node.output[0].clone());
        let w = &mut model.weights[wi];
        // Per-column absmax of the [in, out] weight; an all-zero column gets scale 1.
        // Detached: a scale tracked back to the weight variable would keep `abs(W)` alive.
        let absmax = w.values()?.abs()?.max(0)?;
        let scale = (absmax.clone() / 127.0)?.maximum(&absmax.eq(0f32)?.to_dtype(DType::F32)?)?;
        let scale_name = format!("{}.scale", w.name);
        graph.initializer.push(TensorProto {
            dims: vec![scale.elem_count() as i64],
            data_type: DataType::Float as i32,
            name: scale_name.clone(),
            raw_data: scale
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            ..Default::default()
        });
        w.int8_scale = Some(scale);
        let w_name = w.name.clone();

        let [xq, xs, xz] = quantized_inputs
            .entry(x.clone())
            .or_insert_with(|| {
                let outs = ["quant", "scale", "zero_point"].map(|s| format!("{x}/{s}"));
                nodes.push(NodeProto {
                    input: vec![x.clone()],
                    output: outs.to_vec(),
                    name: format!("{x}/DynamicQuantizeLinear"),
                    op_type: "DynamicQuantizeLinear".into(),
                    ..Default::default()
                });
                outs
            })
            .clone();
        let node_out = |op: &str| format!("{out}/int8/{op}");
        let simple = |op: &str, inputs: Vec<String>, output: String, attribute| NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: output,
            op_type: op.into(),
            attribute,
            ..Default::default()
        };
        nodes.push(simple(
            "MatMulInteger",
            vec![xq, w_name, xz],
            node_out("MatMulInteger"),
            vec![],
        ));
        nodes.push(simple(
            "Cast",
            vec![node_out("MatMulInteger")],
            node_out("Cast"),
            vec![attr_int("to", DataType::Float as i64)],
        ));
        nodes.push(simple(
            "Mul",
            vec![xs, scale_name],
            node_out("scale"),
            vec![],
        ));
        nodes.push(simple(
            "Mul",
            vec![node_out("Cast"), node_out("scale")],
            out,
            vec![],
        ));
        count += 1;
    }
    graph.node = nodes;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::OnnxGraph;
    use candle_core::{Device, Tensor};

    /// A weight read by one MatMul becomes int8; one read twice (or by another op) stays f32,
    /// since the other reader would get int8 data.
    #[test]
    fn only_single_use_matmul_weights_are_quantized() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w =
            |s: f64| -> candle_core::Result<Tensor> { Tensor::randn(0f32, 1.0, (4, 3), &dev)? * s };
        let mut g = OnnxGraph::new();
        let a = g.weight("a.weight.T", &w(1.0)?)?;
        let shared = g.weight("b.weight.T", &w(2.0)?)?;
        let y = g.op("s", "MatMul", &["x", &a], vec![]);
        let z1 = g.op("s", "MatMul", &[&y, &shared], vec![]);
        let z2 = g.op("s", "MatMul", &[&z1, &shared], vec![]);
        g.output_f32(&z2, "out", &["n", "3"]);
        let mut m = g.into_model("t", "");
        assert_eq!(quantize_int8(&mut m)?, 1);
        let int8: Vec<&str> = m
            .weights
            .iter()
            .filter(|w| w.int8_scale.is_some())
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(int8, ["a.weight.T"]);
        let ops: Vec<&str> = m
            .proto
            .graph
            .as_ref()
            .map(|g| g.node.iter().map(|n| n.op_type.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(ops.iter().filter(|o| **o == "MatMulInteger").count(), 1);
        assert_eq!(ops.iter().filter(|o| **o == "MatMul").count(), 2);
        Ok(())
    }
}
