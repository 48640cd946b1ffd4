//! The class labels of a classifier (`TreeEnsembleClassifier`,
//! `SVMClassifier`): int64 or strings, one per class.

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ndarray::Array1;

#[derive(Debug, Clone)]
pub(super) enum Labels {
    Int(Vec<i64>),
    Text(Vec<String>),
}

impl Labels {
    /// The labels of `node` (an `op`): its `ints` attribute (the int64
    /// labels' name differs between operators) or `classlabels_strings`.
    pub(super) fn read(node: &NodeProto, op: &str, ints: &str) -> TractResult<Self> {
        match (
            node.get_attr_opt_vec::<i64>(ints)?,
            node.get_attr_opt_vec::<String>("classlabels_strings")?,
        ) {
            (Some(ints), None) => Ok(Self::Int(ints)),
            (None, Some(texts)) => Ok(Self::Text(texts)),
            _ => bail!(
                "{op} `{}` needs exactly one of {ints} and classlabels_strings",
                node.name
            ),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Int(l) => l.len(),
            Self::Text(l) => l.len(),
        }
    }

    pub(super) fn datum_type(&self) -> DatumType {
        match self {
            Self::Int(_) => i64::datum_type(),
            Self::Text(_) => String::datum_type(),
        }
    }

    /// Label `i` as text.
    pub(super) fn name(&self, i: usize) -> String {
        match self {
            Self::Int(l) => l[i].to_string(),
            Self::Text(l) => l[i].clone(),
        }
    }

    /// The labels of `classes` (indices), as a 1-D tensor.
    pub(super) fn pick(&self, classes: &[usize]) -> Tensor {
        match self {
            Self::Int(l) => Array1::from_iter(classes.iter().map(|c| l[*c])).into_tensor(),
            Self::Text(l) => Array1::from_iter(classes.iter().map(|c| l[*c].clone())).into_tensor(),
        }
    }
}
