"""Train and export the example models, with reference outputs.

Run through `make.sh`, which creates the virtual environment this needs.
Writes, next to this file:

  iris-logreg.onnx   logistic regression, 4 features -> 3 classes
  iris-gbt.onnx      gradient-boosted trees (TreeEnsembleClassifier), 4 -> 3
  digits-mlp.onnx    multi-layer perceptron, 64 pixels -> 10 digits
  iris-scaled-logreg.onnx  StandardScaler + logistic regression on raw
                     features: an ai.onnx.ml Scaler (Sluice's own operator)
                     before a LinearClassifier
  diabetes-gbr.onnx  gradient-boosted regression trees (TreeEnsembleRegressor,
                     SUM), 10 features -> 1 value
  diabetes-rf.onnx   random forest regressor (TreeEnsembleRegressor), 10 -> 1
  iris-rf.onnx       random forest classifier (TreeEnsembleClassifier), 4 -> 3
  cancer-gbt.onnx    binary gradient-boosted trees (one score, LOGISTIC),
                     30 features -> 2 classes
  cancer-rf.onnx     binary random forest classifier, 30 -> 2
  tabular-pipeline.onnx  ColumnTransformer (SimpleImputer on three numeric
                     columns, missing marked -999; OneHotEncoder on a
                     category column) + logistic regression: Imputer,
                     OneHotEncoder, ArrayFeatureExtractor, Concat
  diabetes-gbr-double.onnx  diabetes-gbr as a double-precision model ships
                     (ai.onnx.ml opset 3): double input, thresholds, weights
                     and base values (`*_as_tensor`)
  iris-normalized-logreg.onnx  Normalizer (L2) + logistic regression on raw
                     features (its probabilities pass an L1 Normalizer)
  xgb-iris.onnx      XGBoost multiclass (onnxmltools: BRANCH_LT, SOFTMAX), 4 -> 3
  xgb-cancer.onnx    XGBoost binary (one score, base value, LOGISTIC), 30 -> 2
  lgbm-iris.onnx     LightGBM multiclass (onnxmltools: BRANCH_LEQ with
                     missing-value tracks), 4 -> 3
  lgbm-diabetes.onnx LightGBM regressor, 10 -> 1
  digits-mnb.onnx    multinomial naive Bayes on the digits' pixel counts,
                     64 -> 10: its probabilities are ReduceLogSumExp -> Sub
                     -> Exp of joint log-likelihoods near -1000, which a
                     naive log(sum(exp(x))) underflows to inf
  diabetes-svr.onnx, diabetes-svr-poly.onnx  support vector regression
                     (SVMRegressor) with RBF and polynomial kernels, 10 -> 1
  iris-zipmap.onnx   the logistic regression exported with zipmap on: its
                     ZipMap must be refused, naming the export option
  text-direction.onnx  PP-OCR text-direction classifier (a CNN) from the
                     rapidocr-onnxruntime wheel, unchanged
  <model>.reference.json  inputs and onnxruntime's outputs for each
  <model>.baseline.json   baseline statistics of the training data (format
                     sluice.baseline/1, what `sluice models baseline`
                     computes): per-feature histograms at deciles, the
                     model's output distribution, background rows; for
                     iris-scaled-logreg and the tree models
  <model>.shap.json  for the scikit-learn tree models: the `shap` package's
                     exact interventional TreeSHAP values of the exported
                     trees (raw scores, the baseline's background) for the
                     reference rows
  iris.csv           the raw iris measurements, a sample for
                     `sluice models baseline`

The hand-built graphs (no training) come from make_graphs.py.

Classifiers are exported with zipmap off (plain label and probability
tensors). The first models expect scaled inputs (scaling as a preprocessing
stage); iris-scaled-logreg carries its scaler inside the model.
"""

import io
import json
import pathlib
import sys
import zipfile

import lightgbm
import numpy as np
import onnx
import onnxruntime as ort
import shap
import xgboost
from onnxmltools import convert_lightgbm, convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import SVR
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, OneHotEncoder, StandardScaler

HERE = pathlib.Path(__file__).resolve().parent
OPTIONS = {"zipmap": False}


def reference(name, inputs, folder=HERE):
    """Run the exported model with onnxruntime and store inputs and outputs."""
    session = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, inputs)
    doc = {
        "model": name,
        # Inputs are printed shortest-first in their own precision, so
        # parsing them back gives exactly what onnxruntime saw.
        "inputs": {
            k: {"shape": list(v.shape), "datatype": str(v.dtype), "data": [float(np.format_float_positional(x, unique=True)) for x in v.ravel()]}
            for k, v in inputs.items()
        },
        "outputs": {
            o.name: {"shape": list(v.shape), "datatype": str(v.dtype), "data": v.ravel().tolist()}
            for o, v in zip(session.get_outputs(), outputs)
        },
    }
    (folder / f"{name}.reference.json").write_text(json.dumps(doc) + "\n")
    print(f"{name}: inputs {[ (k, v.shape) for k, v in inputs.items()]} outputs {[ (o.name, v.shape) for o, v in zip(session.get_outputs(), outputs)]}")


def histogram(name, values, bins):
    """A histogram on edges at `bins` quantiles of `values` (numpy's linear
    method; repeated edges merged), as `sluice models baseline` makes it."""
    values = np.sort(values[np.isfinite(values)].astype(np.float64))
    edges = np.unique(np.quantile(values, np.arange(bins + 1) / bins))
    if len(edges) < 2:
        edges = np.repeat(edges[:1], 2)
    which = np.searchsorted(edges[1:-1], values, side="left")
    counts = np.bincount(which, minlength=len(edges) - 1)
    sums = np.bincount(which, weights=values, minlength=len(edges) - 1)
    return {"name": name, "edges": edges.tolist(), "counts": counts.tolist(), "sums": sums.tolist()}


def baseline(name, x, names, bins=10):
    """Write `<name>.baseline.json`: the training rows `x` summarised for
    drift detection, with the model's answers to them and up to 100
    evenly spread background rows for explanations."""
    session = ort.InferenceSession(str(HERE / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float64 if feed.type == "tensor(double)" else np.float32
    # Statistics of the values the model sees: rounded to its precision,
    # so a served row falls in the bin its training twin did.
    x = x.astype(dtype).astype(np.float64)
    outputs = session.run(None, {feed.name: x.astype(dtype)})
    doc = {
        "format": "sluice.baseline/1",
        "input": feed.name,
        "rows": len(x),
        "features": [histogram(n, x[:, i], bins) for i, n in enumerate(names)],
    }
    # The output with one value per row: a label or a regression's value.
    for spec, value in zip(session.get_outputs(), outputs):
        if value.size == len(x):
            if np.issubdtype(value.dtype, np.floating):
                doc["output"] = histogram(spec.name, value.ravel(), bins)
            else:
                labels, counts = np.unique(value.ravel(), return_counts=True)
                doc["output"] = {"name": spec.name, "classes": {str(l): int(c) for l, c in zip(labels, counts)}}
            break
    doc["thresholds"] = {"psi_warn": 0.1, "psi_alert": 0.25, "min_rows": 100}
    step = max(1, -(-len(x) // 100))
    doc["background"] = x[::step].astype(np.float64).tolist()
    (HERE / f"{name}.baseline.json").write_text(json.dumps(doc) + "\n")


def onnx_trees(name):
    """The tree ensemble of `<name>.onnx` in shap's dictionary format: the
    trees exactly as the exported model holds them (float32 thresholds and
    weights), so shap explains the model Sluice serves, not the
    scikit-learn one it came from (their thresholds round differently)."""
    model = onnx.load(str(HERE / f"{name}.onnx"))
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    weights = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    assert all(m == b"BRANCH_LEQ" for m in a["nodes_modes"] if m != b"LEAF")
    outputs = max(a[f"{weights}_ids"]) + 1
    trees = []
    tree_ids = sorted(set(a["nodes_treeids"]))
    scale = 1.0 / len(tree_ids) if a.get("aggregate_function", b"SUM") == b"AVERAGE" else 1.0
    for t in tree_ids:
        at = [i for i, tid in enumerate(a["nodes_treeids"]) if tid == t]
        n = len(at)
        left, right = np.full(n, -1), np.full(n, -1)
        features, thresholds, values = np.zeros(n, dtype=int), np.zeros(n), np.zeros((n, outputs))
        for i in at:
            k = a["nodes_nodeids"][i]
            if a["nodes_modes"][i] != b"LEAF":
                left[k], right[k] = a["nodes_truenodeids"][i], a["nodes_falsenodeids"][i]
                features[k], thresholds[k] = a["nodes_featureids"][i], a["nodes_values"][i]
        for tid, k, target, w in zip(a[f"{weights}_treeids"], a[f"{weights}_nodeids"], a[f"{weights}_ids"], a[f"{weights}_weights"]):
            if tid == t:
                values[k, target] += w * scale
        trees.append({"children_left": left, "children_right": right, "children_default": left, "features": features,
                      "thresholds": thresholds, "values": values, "node_sample_weight": np.ones(n)})
    base = np.array(a.get("base_values", [0.0] * outputs), dtype=np.float64)
    return {"trees": trees, "base_offset": base if outputs > 1 else base[0], "tree_output": "raw_value",
            "objective": "squared_error", "input_dtype": np.float32, "internal_dtype": np.float64}


def explained(name, x, names, rows):
    """Write the baseline of tree model `name` and `<name>.shap.json`:
    what `shap` attributes to each feature of `rows` (the raw score per
    target, against the baseline's background), for Sluice's TreeSHAP to
    match."""
    baseline(name, x, names)
    background = np.array(json.loads((HERE / f"{name}.baseline.json").read_text())["background"])
    explainer = shap.TreeExplainer(onnx_trees(name), data=background, feature_perturbation="interventional", model_output="raw")
    values = np.asarray(explainer.shap_values(rows.astype(np.float64)))
    if values.ndim == 2:
        values = values[..., None]
    doc = {
        "model": name,
        "shap": shap.__version__,
        "rows": rows.astype(np.float64).tolist(),
        "values": values.tolist(),
        "expected_value": np.atleast_1d(explainer.expected_value).tolist(),
    }
    (HERE / f"{name}.shap.json").write_text(json.dumps(doc) + "\n")


def export(name, model, sample, options=OPTIONS):
    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    onx = to_onnx(model, sample[:1], options={id(classifier): options} if hasattr(model, "predict_proba") else None, target_opset=15)
    save(name, onx)


def save(name, onx, folder=HERE):
    """Write a converted model with a dynamic batch dimension (any number
    of rows per call), on its outputs too (onnxmltools declares LightGBM's
    label as [1])."""
    onx.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for output in onx.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims and dims[0].dim_value > 0:
            dims[0].dim_param = "N"
    (folder / f"{name}.onnx").write_bytes(onx.SerializeToString())


def as_double(name, source):
    """Rewrite the one-tree-ensemble model `source` as a double-precision
    model: ai.onnx.ml opset 3, a double input, and thresholds, weights and
    base values as double tensors."""
    model = onnx.load(str(HERE / f"{source}.onnx"))
    node = model.graph.node[0]
    assert node.op_type == "TreeEnsembleRegressor"
    for attr in list(node.attribute):
        if attr.name in ("nodes_values", "target_weights", "base_values"):
            values = np.array(onnx.helper.get_attribute_value(attr), dtype=np.float64)
            node.attribute.remove(attr)
            node.attribute.append(onnx.helper.make_attribute(f"{attr.name}_as_tensor", onnx.numpy_helper.from_array(values)))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = 3
    (HERE / f"{name}.onnx").write_bytes(model.SerializeToString())


def main():
    rng = np.random.default_rng(7)

    iris = load_iris()
    x = ((iris.data - iris.data.mean(axis=0)) / iris.data.std(axis=0)).astype(np.float32)
    y = iris.target
    logreg = LogisticRegression(max_iter=500).fit(x, y)
    export("iris-logreg", logreg, x)
    rows = x[rng.choice(len(x), 8, replace=False)]
    reference("iris-logreg", {"X": rows})

    gbt = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=7).fit(x, y)
    export("iris-gbt", gbt, x)
    reference("iris-gbt", {"X": rows})
    iris_names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    explained("iris-gbt", x, iris_names, rows)

    digits = load_digits()
    xd = (digits.data / 16.0).astype(np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(64, 32), max_iter=300, random_state=7).fit(xd, digits.target)
    export("digits-mlp", mlp, xd)
    reference("digits-mlp", {"X": xd[rng.choice(len(xd), 8, replace=False)]})

    # A real published CNN, from the rapidocr-onnxruntime wheel downloaded by make.sh.
    wheel = next(pathlib.Path(sys.argv[1]).glob("rapidocr_onnxruntime-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.endswith("ch_ppocr_mobile_v2.0_cls_infer.onnx"))
        (HERE / "text-direction.onnx").write_bytes(z.read(member))
    image = np.round(rng.random((1, 3, 48, 192)), 2).astype(np.float32)
    reference("text-direction", {"x": image})

    raw = iris.data.astype(np.float32)
    scaled_logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(raw, y)
    export("iris-scaled-logreg", scaled_logreg, raw)
    reference("iris-scaled-logreg", {"X": raw[rng.choice(len(raw), 8, replace=False)]})
    # The measurements as published (float64, as a CSV sample reads them).
    baseline("iris-scaled-logreg", iris.data, iris_names)
    (HERE / "iris.csv").write_text(",".join(iris_names) + "\n" + "".join(",".join(f"{v:g}" for v in row) + "\n" for row in iris.data))

    export("iris-zipmap", logreg, x, options={"zipmap": True})

    diabetes = load_diabetes()
    xr, yr = diabetes.data.astype(np.float32), diabetes.target
    rows = xr[rng.choice(len(xr), 8, replace=False)]
    gbr = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=7).fit(xr, yr)
    export("diabetes-gbr", gbr, xr)
    reference("diabetes-gbr", {"X": rows})
    explained("diabetes-gbr", xr, diabetes.feature_names, rows)
    rf = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=7).fit(xr, yr)
    export("diabetes-rf", rf, xr)
    reference("diabetes-rf", {"X": rows})
    explained("diabetes-rf", xr, diabetes.feature_names, rows)

    irows = x[rng.choice(len(x), 8, replace=False)]
    iris_rf = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=7).fit(x, y)
    export("iris-rf", iris_rf, x)
    reference("iris-rf", {"X": irows})
    explained("iris-rf", x, iris_names, irows)

    cancer = load_breast_cancer()
    xc, yc = cancer.data.astype(np.float32), cancer.target
    crows = xc[rng.choice(len(xc), 8, replace=False)]
    cancer_gbt = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=7).fit(xc, yc)
    export("cancer-gbt", cancer_gbt, xc)
    reference("cancer-gbt", {"X": crows})
    explained("cancer-gbt", xc, list(cancer.feature_names), crows)
    cancer_rf = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=7).fit(xc, yc)
    export("cancer-rf", cancer_rf, xc)
    reference("cancer-rf", {"X": crows})
    explained("cancer-rf", xc, list(cancer.feature_names), crows)

    # Three numeric columns with missing values (marked -999: JSON has no
    # NaN) and one category column.
    numeric = rng.normal(size=(300, 3)).astype(np.float32)
    numeric[rng.random((300, 3)) < 0.1] = -999.0
    category = rng.integers(0, 4, size=(300, 1)).astype(np.float32)
    xt = np.hstack([numeric, category])
    yt = ((np.where(numeric[:, 0] == -999.0, 0.0, numeric[:, 0]) + (category[:, 0] == 2)) > 0.5).astype(int)
    columns = ColumnTransformer([
        ("numeric", SimpleImputer(missing_values=-999.0, strategy="mean"), [0, 1, 2]),
        ("category", OneHotEncoder(handle_unknown="ignore"), [3]),
    ])
    tabular = make_pipeline(columns, LogisticRegression()).fit(xt, yt)
    export("tabular-pipeline", tabular, xt)
    trows = xt[:8].copy()
    trows[0, 1] = -999.0
    trows[1, 3] = 7.0  # a category never seen in training: all zeros
    reference("tabular-pipeline", {"X": trows})

    as_double("diabetes-gbr-double", "diabetes-gbr")
    reference("diabetes-gbr-double", {"X": rows.astype(np.float64) + 1e-9})

    normalized = make_pipeline(Normalizer(norm="l2"), LogisticRegression(max_iter=500)).fit(raw, y)
    export("iris-normalized-logreg", normalized, raw)
    reference("iris-normalized-logreg", {"X": raw[rng.choice(len(raw), 8, replace=False)]})

    # XGBoost and LightGBM, through onnxmltools.
    xgb_iris = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=7).fit(raw, y)
    save("xgb-iris", convert_xgboost(xgb_iris, initial_types=[("X", FloatTensorType([None, 4]))], target_opset=15))
    reference("xgb-iris", {"X": raw[rng.choice(len(raw), 8, replace=False)]})
    xgb_cancer = xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=7).fit(xc, yc)
    save("xgb-cancer", convert_xgboost(xgb_cancer, initial_types=[("X", FloatTensorType([None, 30]))], target_opset=15))
    reference("xgb-cancer", {"X": crows})
    lgbm_iris = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, random_state=7, verbose=-1).fit(raw, y)
    save("lgbm-iris", convert_lightgbm(lgbm_iris, initial_types=[("X", FloatTensorType([None, 4]))], target_opset=15, zipmap=False))
    reference("lgbm-iris", {"X": raw[rng.choice(len(raw), 8, replace=False)]})
    lgbm_diabetes = lightgbm.LGBMRegressor(n_estimators=30, num_leaves=8, random_state=7, verbose=-1).fit(xr, yr)
    save("lgbm-diabetes", convert_lightgbm(lgbm_diabetes, initial_types=[("X", FloatTensorType([None, 10]))], target_opset=15))
    reference("lgbm-diabetes", {"X": rows})

    naive_bayes()
    support_vectors()


def support_vectors():
    """Support vector regressors on diabetes (their own generator)."""
    rng = np.random.default_rng(13)
    diabetes = load_diabetes()
    xs, ys = diabetes.data.astype(np.float32), diabetes.target
    rows = xs[rng.choice(len(xs), 8, replace=False)]
    for name, svr in [("diabetes-svr", SVR(kernel="rbf", C=50.0, gamma=2.0)), ("diabetes-svr-poly", SVR(kernel="poly", degree=3, C=50.0, gamma=2.0, coef0=1.0))]:
        export(name, svr.fit(xs, ys), xs)
        reference(name, {"X": rows})


def naive_bayes():
    """Multinomial naive Bayes on the digits (its own generator, so the
    models above do not change with it)."""
    rng = np.random.default_rng(11)
    digits = load_digits()
    xd = digits.data.astype(np.float32)
    mnb = MultinomialNB().fit(xd, digits.target)
    export("digits-mnb", mnb, xd)
    reference("digits-mnb", {"X": xd[rng.choice(len(xd), 8, replace=False)]})


if __name__ == "__main__":
    main()
