//! `LabelEncoder` (ai.onnx.ml, opset 2): maps each element through
//! `keys_*` → `values_*` (int64, string or float on either side), with the
//! `default_*` for keys not listed. Output: the input's shape in the
//! values' type.

use std::collections::HashMap;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ndarray::ArrayD;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};
use tract_onnx::tract_hir::internal::{
    Expansion, InferenceOp, InferenceResult, Solver, TensorProxy, expand,
};

/// Keys, each to its position in the values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keys {
    Int(HashMap<i64, usize>),
    Text(HashMap<String, usize>),
    /// By bit pattern: f32 does not hash.
    Float(HashMap<u32, usize>),
}

/// The values, and the one for unknown keys.
#[derive(Debug, Clone)]
enum Values {
    Int(Vec<i64>, i64),
    Text(Vec<String>, String),
    Float(Vec<f32>, f32),
}

#[derive(Debug, Clone)]
struct LabelEncoder {
    keys: Keys,
    values: Values,
}

/// Identical maps (float values compared bit for bit).
impl PartialEq for LabelEncoder {
    fn eq(&self, other: &Self) -> bool {
        let values = match (&self.values, &other.values) {
            (Values::Int(a, x), Values::Int(b, y)) => a == b && x == y,
            (Values::Text(a, x), Values::Text(b, y)) => a == b && x == y,
            (Values::Float(a, x), Values::Float(b, y)) => {
                a.iter()
                    .map(|v| v.to_bits())
                    .eq(b.iter().map(|v| v.to_bits()))
                    && x.to_bits() == y.to_bits()
            }
            _ => false,
        };
        values && self.keys == other.keys
    }
}

impl Eq for LabelEncoder {}

fn positions<K: std::hash::Hash + Eq>(keys: impl IntoIterator<Item = K>) -> HashMap<K, usize> {
    // The first of duplicated keys wins, as onnxruntime's map insertion.
    let mut map = HashMap::new();
    for (i, k) in keys.into_iter().enumerate() {
        map.entry(k).or_insert(i);
    }
    map
}

pub(super) fn parse(
    _: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name = &node.name;
    let (keys, count) = match (
        node.get_attr_opt_vec::<i64>("keys_int64s")?,
        node.get_attr_opt_vec::<String>("keys_strings")?,
        node.get_attr_opt_vec::<f32>("keys_floats")?,
    ) {
        (Some(k), None, None) => keyed(k, Keys::Int),
        (None, Some(k), None) => keyed(k, Keys::Text),
        (None, None, Some(k)) => keyed(k.iter().map(|f| f.to_bits()).collect(), Keys::Float),
        _ => bail!(
            "LabelEncoder `{name}` needs exactly one of keys_int64s, keys_strings and keys_floats"
        ),
    };
    let values = match (
        node.get_attr_opt_vec::<i64>("values_int64s")?,
        node.get_attr_opt_vec::<String>("values_strings")?,
        node.get_attr_opt_vec::<f32>("values_floats")?,
    ) {
        (Some(v), None, None) => Values::Int(v, node.get_attr_opt("default_int64")?.unwrap_or(-1)),
        (None, Some(v), None) => Values::Text(
            v,
            node.get_attr_opt("default_string")?
                .unwrap_or_else(|| "_Unused".into()),
        ),
        (None, None, Some(v)) => {
            Values::Float(v, node.get_attr_opt("default_float")?.unwrap_or(-0.0))
        }
        _ => bail!(
            "LabelEncoder `{name}` needs exactly one of values_int64s, values_strings and values_floats"
        ),
    };
    let value_count = match &values {
        Values::Int(v, _) => v.len(),
        Values::Text(v, _) => v.len(),
        Values::Float(v, _) => v.len(),
    };
    ensure!(
        value_count == count,
        "LabelEncoder `{name}` has {count} keys and {value_count} values; they pair up one to one"
    );
    Ok((expand(LabelEncoder { keys, values }), vec![]))
}

/// Keys as positions, wrapped, and how many there are.
fn keyed<K: std::hash::Hash + Eq>(
    keys: Vec<K>,
    wrap: fn(HashMap<K, usize>) -> Keys,
) -> (Keys, usize) {
    let count = keys.len();
    (wrap(positions(keys)), count)
}

impl LabelEncoder {
    fn key_type(&self) -> DatumType {
        match self.keys {
            Keys::Int(_) => i64::datum_type(),
            Keys::Text(_) => String::datum_type(),
            Keys::Float(_) => f32::datum_type(),
        }
    }

    fn value_type(&self) -> DatumType {
        match self.values {
            Values::Int(..) => i64::datum_type(),
            Values::Text(..) => String::datum_type(),
            Values::Float(..) => f32::datum_type(),
        }
    }

    /// The position of each element's key among the keys, if listed.
    fn lookup(&self, x: &Tensor) -> TractResult<Vec<Option<usize>>> {
        let plain = x.try_as_plain_ram()?;
        Ok(match &self.keys {
            Keys::Int(map) => plain
                .as_slice::<i64>()?
                .iter()
                .map(|k| map.get(k).copied())
                .collect(),
            Keys::Text(map) => plain
                .as_slice::<String>()?
                .iter()
                .map(|k| map.get(k).copied())
                .collect(),
            Keys::Float(map) => plain
                .as_slice::<f32>()?
                .iter()
                .map(|k| map.get(&k.to_bits()).copied())
                .collect(),
        })
    }
}

impl Expansion for LabelEncoder {
    fn name(&self) -> StaticName {
        "LabelEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        super::same_shape_rules(s, inputs, outputs, Some(self.value_type()))
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let mut x = inputs[0];
        if dt != self.key_type() {
            // Integers may arrive as any integer type (tract types some
            // int64 casts as TDim); nothing else converts.
            ensure!(
                self.key_type() == i64::datum_type()
                    && (dt.is_integer() || dt == TDim::datum_type()),
                "LabelEncoder `{prefix}` maps {:?} keys; its input is {dt:?}",
                self.key_type()
            );
            x = model.wire_node(format!("{prefix}.to_i64"), cast(i64::datum_type()), &[x])?[0];
        }
        model.wire_node(prefix, self.clone(), &[x])
    }
}

impl Op for LabelEncoder {
    fn name(&self) -> StaticName {
        "SluiceLabelEncoder".into()
    }

    op_as_typed_op!();
}

impl EvalOp for LabelEncoder {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let found = self.lookup(&inputs[0])?;
        fn map<T: Clone + Datum>(
            found: &[Option<usize>],
            values: &[T],
            default: &T,
            shape: Vec<usize>,
        ) -> TractResult<Tensor> {
            let data = found
                .iter()
                .map(|i| i.map_or_else(|| default.clone(), |i| values[i].clone()))
                .collect();
            Ok(ArrayD::from_shape_vec(shape, data)?.into_tensor())
        }
        let output = match &self.values {
            Values::Int(v, d) => map(&found, v, d, shape)?,
            Values::Text(v, d) => map(&found, v, d, shape)?,
            Values::Float(v, d) => map(&found, v, d, shape)?,
        };
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for LabelEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.value_type().fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::graph::{Attr, one_node};
    use crate::inference::compile;
    use std::collections::BTreeMap;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::prelude::*;

    #[test]
    fn strings_to_ints_and_back_with_defaults() {
        let to_ints = one_node(
            "LabelEncoder",
            DataType::String,
            &[-1],
            &[("Y", DataType::Int64)],
            vec![
                ("keys_strings", Attr::Strings(vec!["a", "b", "c"])),
                ("values_int64s", Attr::Ints(vec![10, 20, 30])),
                ("default_int64", Attr::Int(-7)),
            ],
        );
        let (plan, _, _) = compile(&to_ints, &BTreeMap::new()).expect("compiles");
        let x = tract_onnx::tract_core::ndarray::arr1(&["c".to_string(), "z".into(), "a".into()])
            .into_tensor();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let y: Vec<i64> = y[0]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(y, [30, -7, 10]);

        let to_strings = one_node(
            "LabelEncoder",
            DataType::Int64,
            &[-1, 2],
            &[("Y", DataType::String)],
            vec![
                ("keys_int64s", Attr::Ints(vec![1, 2])),
                ("values_strings", Attr::Strings(vec!["one", "two"])),
            ],
        );
        let (plan, _, _) = compile(&to_strings, &BTreeMap::new()).expect("compiles");
        let x = Tensor::from_shape(&[1, 2], &[2i64, 5]).unwrap();
        let y = plan.run(tvec!(x.into_tvalue())).expect("runs");
        let view = y[0].to_plain_array_view::<String>().unwrap();
        assert_eq!(view.shape(), [1, 2]);
        assert_eq!(view.iter().cloned().collect::<Vec<_>>(), ["two", "_Unused"]);

        let unpaired = one_node(
            "LabelEncoder",
            DataType::Int64,
            &[-1],
            &[("Y", DataType::Float)],
            vec![
                ("keys_int64s", Attr::Ints(vec![1, 2])),
                ("values_floats", Attr::Floats(vec![0.5])),
            ],
        );
        let error = compile(&unpaired, &BTreeMap::new())
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("has 2 keys and 1 values"), "{error}");
    }
}
