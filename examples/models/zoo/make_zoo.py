"""Train and export a zoo of common estimators, with onnxruntime's outputs.

What a new user tries first: scikit-learn's classifier and regressor
families (linear, SVM, neighbours, naive Bayes, trees and forests, boosting,
bagging, calibration, pipelines with PCA and polynomial features, k-means,
isolation forest, MLPs) exported by skl2onnx, plus XGBoost and LightGBM
exported by onnxmltools. For each, writes next to this file:

  <name>.onnx            the exported model (zipmap off, any number of rows)
  <name>.reference.json  16 held-out rows and onnxruntime's outputs on them
  index.json             every model: name, estimator, dataset (and the
                         exporter's error for those it cannot export)

Run through `../make.sh` (with the example models, in their virtual
environment); the outputs are committed. tests/e2e/zoo.rs pushes every model
to a node and compares its answers with these references.
"""

import json
import pathlib
import sys

import lightgbm
import numpy as np
import xgboost
from onnxmltools import convert_lightgbm, convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from skl2onnx import to_onnx
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    AdaBoostClassifier,
    AdaBoostRegressor,
    BaggingClassifier,
    BaggingRegressor,
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
)
from sklearn.linear_model import (
    BayesianRidge,
    ElasticNet,
    HuberRegressor,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR, NuSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import make_models  # noqa: E402  (reference() and save(), shared with the example models)

HERE = pathlib.Path(__file__).resolve().parent
ROWS = 16


def split(data, seed):
    """Train and held-out rows (f32), the held-out ones shuffled."""
    x = data.data.astype(np.float32)
    return train_test_split(x, data.target, test_size=0.25, random_state=seed)


def datasets():
    iris, cancer, diabetes, digits = (split(d, i) for i, d in enumerate([load_iris(), load_breast_cancer(), load_diabetes(), load_digits()]))
    return {"iris": iris, "cancer": cancer, "diabetes": diabetes, "digits": digits}


def scaled(model):
    return make_pipeline(StandardScaler(), model)


# name, dataset, estimator: what a user of each family would write.
ZOO = [
    # Linear classifiers
    ("logreg-iris", "iris", lambda: LogisticRegression(max_iter=1000)),
    ("logreg-cancer", "cancer", lambda: scaled(LogisticRegression(max_iter=1000))),
    ("linear-svc-iris", "iris", lambda: LinearSVC()),  # skl2onnx cannot export it inside a pipeline
    ("sgd-classifier-cancer", "cancer", lambda: scaled(SGDClassifier(loss="log_loss", random_state=0))),
    ("ridge-classifier-iris", "iris", lambda: RidgeClassifier()),
    ("perceptron-cancer", "cancer", lambda: scaled(Perceptron(random_state=0))),
    ("lda-iris", "iris", lambda: LinearDiscriminantAnalysis()),
    # Support vector machines
    ("svc-rbf-iris", "iris", lambda: SVC(kernel="rbf")),
    ("svc-rbf-proba-iris", "iris", lambda: SVC(kernel="rbf", probability=True, random_state=0)),
    ("svc-linear-cancer", "cancer", lambda: scaled(SVC(kernel="linear"))),
    ("svc-poly-proba-cancer", "cancer", lambda: scaled(SVC(kernel="poly", degree=3, probability=True, random_state=0))),
    ("svc-sigmoid-iris", "iris", lambda: scaled(SVC(kernel="sigmoid", gamma=0.1))),
    ("nusvc-iris", "iris", lambda: NuSVC(nu=0.3)),
    ("svr-rbf-diabetes", "diabetes", lambda: SVR(kernel="rbf", C=50.0, gamma=2.0)),
    ("linear-svr-diabetes", "diabetes", lambda: scaled(LinearSVR(C=10.0, max_iter=10000, random_state=0))),
    # Neighbours and naive Bayes
    ("knn-iris", "iris", lambda: KNeighborsClassifier(n_neighbors=5)),
    ("knn-diabetes", "diabetes", lambda: KNeighborsRegressor(n_neighbors=7, weights="distance")),
    ("gaussian-nb-iris", "iris", lambda: GaussianNB()),
    ("bernoulli-nb-digits", "digits", lambda: BernoulliNB(binarize=4.0)),
    # Trees, forests and boosting
    ("tree-iris", "iris", lambda: DecisionTreeClassifier(max_depth=5, random_state=0)),
    ("tree-diabetes", "diabetes", lambda: DecisionTreeRegressor(max_depth=6, random_state=0)),
    ("random-forest-cancer", "cancer", lambda: RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)),
    ("extra-trees-iris", "iris", lambda: ExtraTreesClassifier(n_estimators=20, max_depth=6, random_state=0)),
    ("extra-trees-diabetes", "diabetes", lambda: ExtraTreesRegressor(n_estimators=20, max_depth=6, random_state=0)),
    ("gradient-boosting-iris", "iris", lambda: GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0)),
    ("hist-gradient-boosting-cancer", "cancer", lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0)),
    ("hist-gradient-boosting-diabetes", "diabetes", lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0)),
    ("adaboost-iris", "iris", lambda: AdaBoostClassifier(n_estimators=20, random_state=0)),
    ("adaboost-diabetes", "diabetes", lambda: AdaBoostRegressor(n_estimators=20, random_state=0)),
    ("bagging-cancer", "cancer", lambda: BaggingClassifier(DecisionTreeClassifier(max_depth=5), n_estimators=10, random_state=0)),
    ("bagging-diabetes", "diabetes", lambda: BaggingRegressor(DecisionTreeRegressor(max_depth=5), n_estimators=10, random_state=0)),
    ("xgboost-iris", "iris", lambda: xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0)),
    ("xgboost-diabetes", "diabetes", lambda: xgboost.XGBRegressor(n_estimators=30, max_depth=3, random_state=0)),
    ("lightgbm-cancer", "cancer", lambda: lightgbm.LGBMClassifier(n_estimators=20, num_leaves=15, random_state=0, verbose=-1)),
    ("lightgbm-diabetes", "diabetes", lambda: lightgbm.LGBMRegressor(n_estimators=30, num_leaves=15, random_state=0, verbose=-1)),
    # Calibration and pipelines
    ("calibrated-svc-iris", "iris", lambda: CalibratedClassifierCV(LinearSVC(), cv=3)),
    ("pca-logreg-digits", "digits", lambda: make_pipeline(StandardScaler(), PCA(n_components=16, random_state=0), LogisticRegression(max_iter=2000))),
    ("polynomial-ridge-diabetes", "diabetes", lambda: make_pipeline(PolynomialFeatures(degree=2), Ridge(alpha=0.1))),
    # Linear regressors
    ("linear-regression-diabetes", "diabetes", lambda: LinearRegression()),
    ("ridge-diabetes", "diabetes", lambda: Ridge(alpha=0.5)),
    ("lasso-diabetes", "diabetes", lambda: Lasso(alpha=0.05)),
    ("elastic-net-diabetes", "diabetes", lambda: ElasticNet(alpha=0.01, l1_ratio=0.5)),
    ("sgd-regressor-diabetes", "diabetes", lambda: scaled(SGDRegressor(random_state=0))),
    ("bayesian-ridge-diabetes", "diabetes", lambda: BayesianRidge()),
    ("huber-diabetes", "diabetes", lambda: scaled(HuberRegressor(max_iter=1000))),
    # Clustering and outliers
    ("kmeans-iris", "iris", lambda: KMeans(n_clusters=3, n_init=10, random_state=0)),
    ("isolation-forest-cancer", "cancer", lambda: IsolationForest(n_estimators=20, random_state=0)),
    # Neural networks
    ("mlp-iris", "iris", lambda: scaled(MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0))),
    ("mlp-diabetes", "diabetes", lambda: scaled(MLPRegressor(hidden_layer_sizes=(32, 16), max_iter=3000, random_state=0))),
]


def convert(model, sample):
    """The ONNX graph of a fitted model, with the exporter its family uses."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    types = [("X", FloatTensorType([None, sample.shape[1]]))]
    if isinstance(final, xgboost.XGBModel):
        return convert_xgboost(final, initial_types=types, target_opset=15)
    if isinstance(final, lightgbm.LGBMModel):
        return convert_lightgbm(final, initial_types=types, target_opset=15, zipmap=False)
    opsets = {"": 15, "ai.onnx.ml": 3}
    if not hasattr(final, "classes_"):
        return to_onnx(model, sample[:1], target_opset=opsets)
    try:
        return to_onnx(model, sample[:1], options={id(final): {"zipmap": False}}, target_opset=opsets)
    except NameError:  # a classifier without probabilities has no zipmap option
        return to_onnx(model, sample[:1], target_opset=opsets)


def main():
    data = datasets()
    rng = np.random.default_rng(17)
    index = []
    for name, dataset, make in ZOO:
        x_train, x_test, y_train, _ = data[dataset]
        model = make()
        if isinstance(model, (KMeans, IsolationForest)):
            model.fit(x_train)
        else:
            model.fit(x_train, y_train)
        estimator = model.steps[-1][1] if hasattr(model, "steps") else model
        entry = {"name": name, "estimator": type(estimator).__name__, "model": " ".join(repr(model).split()), "dataset": dataset}
        rows = x_test[rng.choice(len(x_test), ROWS, replace=False)]
        try:
            onx = convert(model, x_train)
        except Exception as e:  # the exporter's failure, recorded for the README's table
            entry["export_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            print(f"{name}: not exported: {entry['export_error']}")
        else:
            make_models.save(name, onx, HERE)
            make_models.reference(name, {"X": rows}, HERE)
        index.append(entry)
    (HERE / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"{sum('export_error' not in e for e in index)} of {len(index)} models exported")


if __name__ == "__main__":
    main()
