"""Write the hand-built test graphs (no training; only the onnx package).

Run through `make.sh`. Writes, next to this file:

  unknown-operator.onnx  a graph with an operator no engine knows
                     (com.example Frobnicate): refused naming it
  gram.onnx          Y = X · Xᵀ for X of shape [N, N]: cheap for small N,
                     about a second of one core at N = 2000 (a slow run on
                     demand, for tests of how runs are scheduled)
  gather.onnx        Y = D[I] over a constant 3 × 2 table D, indices I from
                     the request: an index past the table makes tract panic
                     (the panic must fail that request alone)
"""

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).resolve().parent


def save(name, nodes, inputs, outputs, initializers=(), opsets=(("", 15),)):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    (HERE / f"{name}.onnx").write_bytes(model.SerializeToString())


def main():
    save(
        "unknown-operator",
        [helper.make_node("Frobnicate", ["X"], ["Y"], domain="com.example")],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
        opsets=(("", 15), ("com.example", 1)),
    )
    save(
        "gram",
        [helper.make_node("Transpose", ["X"], ["XT"]), helper.make_node("MatMul", ["X", "XT"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "N"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", "N"])],
    )
    save(
        "gather",
        [helper.make_node("Gather", ["D", "I"], ["Y"], axis=0)],
        [helper.make_tensor_value_info("I", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "D")],
    )


if __name__ == "__main__":
    main()
