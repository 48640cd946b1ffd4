//! Operators of the ONNX-ML domain (`ai.onnx.ml`) that stock tract lacks,
//! registered with tract's ONNX operator registry before a model is read.
//!
//! - `Scaler` ([`scaler`]), as scikit-learn's `StandardScaler` exports;
//! - `Binarizer` ([`binarizer`]), `Imputer` ([`imputer`]),
//!   `OneHotEncoder` ([`one_hot`]), `LabelEncoder` ([`label_encoder`]),
//!   `Normalizer` ([`normalizer`]) and `ArrayFeatureExtractor`
//!   ([`array_feature_extractor`]), the last two replacing tract's, which
//!   differ from onnxruntime (see each);
//! - `LinearRegressor` and `LinearClassifier` ([`linear`]), replacing
//!   tract's, which cost more than the arithmetic on small models and fail
//!   to optimise after a `Concat`;
//! - `SVMRegressor` ([`svm_regressor`]): support vector regression with
//!   linear, polynomial, RBF and sigmoid kernels, and one-class models;
//!   `SVMClassifier` ([`svm_classifier`]): one-vs-one voting, Platt-scaled
//!   probabilities coupled as libsvm and onnxruntime couple them;
//! - `TreeEnsembleRegressor` ([`tree_regressor`]) and
//!   `TreeEnsembleClassifier` ([`tree_classifier`]) on Sluice's flattened
//!   tree evaluator ([`trees`]).
//! - `ZipMap` is refused with the export option that avoids it: a map per
//!   row is not a tensor, and no client of a model server wants one.
//!
//! And two of the default domain, computed as onnxruntime does where
//! tract's differ: `ReduceLogSumExp` ([`log_sum_exp`]), without underflow,
//! and `Sigmoid` ([`sigmoid`]), exactly rather than by an approximation
//! that never reaches 1.

mod array_feature_extractor;
mod binarizer;
mod class_labels;
mod imputer;
mod label_encoder;
mod linear;
mod log_sum_exp;
mod normalizer;
mod one_hot;
mod scaler;
mod sigmoid;
mod svm_classifier;
mod svm_kernel;
mod svm_regressor;
mod tree_classifier;
mod tree_regressor;
mod trees;

pub use trees::TreeModel;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Add Sluice's operators to `register` (replacing tract's where both exist).
pub(super) fn register(register: &mut OnnxOpRegister) {
    register.insert("ArrayFeatureExtractor", array_feature_extractor::parse);
    register.insert("Binarizer", binarizer::parse);
    register.insert("Imputer", imputer::parse);
    register.insert("OneHotEncoder", one_hot::parse);
    register.insert("LabelEncoder", label_encoder::parse);
    register.insert("LinearClassifier", linear::parse_classifier);
    register.insert("LinearRegressor", linear::parse_regressor);
    register.insert("ReduceLogSumExp", log_sum_exp::parse);
    register.insert("Normalizer", normalizer::parse);
    register.insert("Scaler", scaler::parse);
    register.insert("Sigmoid", sigmoid::parse);
    register.insert("SVMClassifier", svm_classifier::parse);
    register.insert("SVMRegressor", svm_regressor::parse);
    register.insert("TreeEnsembleRegressor", tree_regressor::parse);
    if let Some(tract) = register.0.get("TreeEnsembleClassifier") {
        // The same for every registry: the first one sets it.
        let _ = tree_classifier::TRACT_PARSER.set(*tract);
    }
    register.insert("TreeEnsembleClassifier", tree_classifier::parse);
    register.insert("ZipMap", refuse_zipmap);
}

/// The one tree ensemble of `model` whose score is a sum, fed straight
/// from its input `input` (through casts at most): what TreeSHAP can
/// explain in that input's features. `None` when there is none, several,
/// or something transforms the input first.
pub(super) fn tree_model(model: &TypedModel, input: &str) -> Option<TreeModel> {
    let mut found = model.nodes().iter().filter_map(|node| {
        let additive =
            tree_classifier::additive(node).or_else(|| tree_regressor::additive(node))?;
        Some((node, additive))
    });
    let (node, additive) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let mut feed = model.node(node.inputs.first()?.node);
    while feed.op_is::<tract_onnx::tract_core::ops::cast::Cast>() {
        feed = model.node(feed.inputs.first()?.node);
    }
    let is_input = model
        .input_outlets()
        .ok()?
        .iter()
        .any(|o| o.node == feed.id);
    (is_input && feed.name == input).then(|| TreeModel(additive))
}

/// The inference rules of a one-input, one-output operator whose output
/// has the input's shape and either the input's type or `output`.
fn same_shape_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    output: Option<DatumType>,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    match output {
        Some(dt) => s.equals(&outputs[0].datum_type, dt)?,
        None => s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?,
    }
    s.equals(&inputs[0].shape, &outputs[0].shape)
}

/// Equality of an operator that wraps its parsed model in an `Arc`: the
/// same model, not equal weights (comparing them would cost a pass over
/// every tree or support vector each time tract compares nodes).
macro_rules! same_by_arc {
    ($op:ident) => {
        impl PartialEq for $op {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }
        }

        impl Eq for $op {}
    };
}
use same_by_arc;

/// The inference rules of a regressor: rows in (`[N, features]`), `[N,
/// targets]` f32 out.
fn regressor_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    targets: usize,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    s.equals(&inputs[0].rank, 2)?;
    s.equals(&outputs[0].datum_type, f32::datum_type())?;
    s.equals(&outputs[0].rank, 2)?;
    s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
    s.equals(&outputs[0].shape[1], targets.to_dim())
}

/// The inference rules of a classifier: rows in, a label per row
/// (`labels`' type) and `[N, scores]` f32 out.
fn classifier_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    labels: DatumType,
    scores: usize,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 2)?;
    s.equals(&inputs[0].rank, 2)?;
    s.equals(&outputs[0].datum_type, labels)?;
    s.equals(&outputs[0].rank, 1)?;
    s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
    s.equals(&outputs[1].datum_type, f32::datum_type())?;
    s.equals(&outputs[1].rank, 2)?;
    s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
    s.equals(&outputs[1].shape[1], scores.to_dim())
}

/// `input` as f32: itself when it already is, else through a cast.
fn wire_f32(prefix: &str, model: &mut TypedModel, input: OutletId) -> TractResult<OutletId> {
    if model.outlet_fact(input)?.datum_type == f32::datum_type() {
        return Ok(input);
    }
    let cast = tract_onnx::tract_core::ops::cast::cast(f32::datum_type());
    Ok(model.wire_node(format!("{prefix}.to_f32"), cast, &[input])?[0])
}

fn refuse_zipmap(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    bail!(
        "operator `ZipMap` (node `{}`) turns probabilities into one map per row, which is not a tensor; export the classifier without it (skl2onnx: `options={{id(model): {{\"zipmap\": False}}}}`; onnxmltools: `zipmap=False`)",
        node.name
    )
}

/// Hand-built one-node ONNX graphs for the operators' tests.
#[cfg(test)]
pub(crate) mod graph {
    use prost::Message;
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{
        AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
        TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
    };

    /// An attribute value.
    pub enum Attr {
        Floats(Vec<f32>),
        /// A 1-D double tensor (the `*_as_tensor` attributes).
        Doubles(Vec<f64>),
        Float(f32),
        Ints(Vec<i64>),
        Int(i64),
        Strings(Vec<&'static str>),
        String(&'static str),
    }

    fn value_info(name: &str, elem_type: DataType, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                value: Some(if *d < 0 {
                    dimension::Value::DimParam("N".into())
                } else {
                    dimension::Value::DimValue(*d)
                }),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: elem_type as i32,
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A constant input of the node (an initializer), after `X`.
    pub enum Constant {
        Ints(&'static str, Vec<i64>),
    }

    /// The bytes of a model with one `ai.onnx.ml` node `op` reading `X`
    /// (`elem_type`, `dims`; -1 is the dynamic N) and writing `outputs`.
    pub fn one_node(
        op: &str,
        elem_type: DataType,
        dims: &[i64],
        outputs: &[(&str, DataType)],
        attributes: Vec<(&str, Attr)>,
    ) -> Vec<u8> {
        one_node_with(op, elem_type, dims, outputs, attributes, vec![])
    }

    /// [`one_node`] with constant inputs after `X`.
    pub fn one_node_with(
        op: &str,
        elem_type: DataType,
        dims: &[i64],
        outputs: &[(&str, DataType)],
        attributes: Vec<(&str, Attr)>,
        constants: Vec<Constant>,
    ) -> Vec<u8> {
        let attribute = attributes
            .into_iter()
            .map(|(name, value)| {
                let mut a = AttributeProto {
                    name: name.into(),
                    ..Default::default()
                };
                match value {
                    Attr::Floats(v) => (a.r#type, a.floats) = (AttributeType::Floats as i32, v),
                    Attr::Doubles(v) => {
                        a.r#type = AttributeType::Tensor as i32;
                        a.t = Some(TensorProto {
                            dims: vec![v.len() as i64],
                            data_type: DataType::Double as i32,
                            double_data: v,
                            ..Default::default()
                        });
                    }
                    Attr::Float(v) => (a.r#type, a.f) = (AttributeType::Float as i32, v),
                    Attr::Ints(v) => (a.r#type, a.ints) = (AttributeType::Ints as i32, v),
                    Attr::Int(v) => (a.r#type, a.i) = (AttributeType::Int as i32, v),
                    Attr::Strings(v) => {
                        a.r#type = AttributeType::Strings as i32;
                        a.strings = v.into_iter().map(|s| s.as_bytes().to_vec()).collect();
                    }
                    Attr::String(v) => {
                        (a.r#type, a.s) = (AttributeType::String as i32, v.as_bytes().to_vec())
                    }
                }
                a
            })
            .collect();
        let initializer: Vec<TensorProto> = constants
            .into_iter()
            .map(|c| match c {
                Constant::Ints(name, values) => TensorProto {
                    name: name.into(),
                    dims: vec![values.len() as i64],
                    data_type: DataType::Int64 as i32,
                    int64_data: values,
                    ..Default::default()
                },
            })
            .collect();
        let node = NodeProto {
            input: std::iter::once("X".to_string())
                .chain(initializer.iter().map(|t| t.name.clone()))
                .collect(),
            output: outputs.iter().map(|(n, _)| n.to_string()).collect(),
            name: op.to_lowercase(),
            op_type: op.into(),
            domain: "ai.onnx.ml".into(),
            attribute,
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![node],
            name: "one-node".into(),
            input: vec![value_info("X", elem_type, dims)],
            initializer,
            output: outputs
                .iter()
                .map(|(name, t)| ValueInfoProto {
                    name: name.to_string(),
                    ..value_info(name, *t, &[])
                })
                .map(|mut v| {
                    // Output shapes are left for inference to fill in.
                    if let Some(TypeProto {
                        value: Some(type_proto::Value::TensorType(t)),
                        ..
                    }) = &mut v.r#type
                    {
                        t.shape = None;
                    }
                    v
                })
                .collect(),
            ..Default::default()
        };
        let opset = |domain: &str, version| OperatorSetIdProto {
            domain: domain.into(),
            version,
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![opset("", 15), opset("ai.onnx.ml", 3)],
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::graph::one_node;
    use crate::inference::compile;
    use std::collections::BTreeMap;
    use tract_onnx::pb::tensor_proto::DataType;

    #[test]
    fn zipmap_is_refused_with_the_export_option() {
        let model = one_node(
            "ZipMap",
            DataType::Float,
            &[-1, 3],
            &[("Z", DataType::Float)],
            vec![],
        );
        let error = compile(&model, &BTreeMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("`ZipMap`") && error.contains("\"zipmap\": False"),
            "{error}"
        );
    }
}
