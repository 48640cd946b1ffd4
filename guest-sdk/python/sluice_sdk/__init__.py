"""Sluice stages in Python: the `sluice:pipeline` contract, as the Rust
SDK gives it, over the bindings componentize-py generates from the WIT.

A stage is a subclass of `Stage` with `run(self, message) -> Message`::

    import sluice_sdk as sluice

    class Scale(sluice.Stage):
        def run(self, message):
            x = message.tensor("features")
            factor = float(sluice.config.get("factor") or "1")
            return sluice.Message(tensors={"scaled": x.map(lambda v: v * factor)})

`sluice build DIR` turns a folder holding `stage.py` into a component,
imported (and so pre-initialised) at build time. Raise `InvalidInput` for
a request the caller can fix (HTTP 400); any other exception is an
internal failure (HTTP 500). Plain Python only: no native extensions.
"""

from __future__ import annotations

import json as _json
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from componentize_py_types import Err
from wit_world.imports import config as _config
from wit_world.imports import log as _log
from wit_world.imports import types as _types

__all__ = [
    "Stage",
    "Message",
    "Tensor",
    "InvalidInput",
    "Internal",
    "config",
    "log",
    "Model",
    "features",
]

Scalar = Union[bool, int, float, str]


class InvalidInput(Exception):
    """The input is wrong and the caller can fix it: HTTP 400."""


class Internal(Exception):
    """The stage failed for a reason the caller cannot fix: HTTP 500."""


# Element types by their Open Inference Protocol names, and how each
# travels through the WIT.
_DATA = {
    "FP32": (_types.ElementType.F32, _types.TensorData_F32),
    "FP64": (_types.ElementType.F64, _types.TensorData_F64),
    "INT32": (_types.ElementType.I32, _types.TensorData_I32),
    "INT64": (_types.ElementType.I64, _types.TensorData_I64),
    "UINT8": (_types.ElementType.U8, _types.TensorData_U8),
    "BOOL": (_types.ElementType.BOOL, _types.TensorData_Bool),
    "BYTES": (_types.ElementType.STRING, _types.TensorData_String),
}
_DTYPE_OF = {data: name for name, (_, data) in _DATA.items()}
_DTYPE_OF_ELEMENT = {element: name for name, (element, _) in _DATA.items()}


class Tensor:
    """A dense tensor: an element type (FP32, FP64, INT32, INT64, UINT8,
    BOOL or BYTES), a shape and its elements in row-major order."""

    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype: str, shape: Sequence[int], data: Sequence[Any]):
        if dtype not in _DATA:
            raise Internal(f"unknown tensor type {dtype!r}; use one of {', '.join(_DATA)}")
        count = 1
        for d in shape:
            count *= int(d)
        if count != len(data):
            raise Internal(f"a tensor of shape {list(shape)} holds {count} elements, got {len(data)}")
        self.dtype = dtype
        self.shape = [int(d) for d in shape]
        self.data = bytes(data) if dtype == "UINT8" else list(data)

    @classmethod
    def f32(cls, shape: Sequence[int], data: Sequence[float]) -> "Tensor":
        return cls("FP32", shape, data)

    @classmethod
    def f64(cls, shape: Sequence[int], data: Sequence[float]) -> "Tensor":
        return cls("FP64", shape, data)

    @classmethod
    def i64(cls, shape: Sequence[int], data: Sequence[int]) -> "Tensor":
        return cls("INT64", shape, data)

    @classmethod
    def strings(cls, shape: Sequence[int], data: Sequence[str]) -> "Tensor":
        return cls("BYTES", shape, data)

    def rows(self) -> List[list]:
        """The elements as rows of the last dimension."""
        width = self.shape[-1] if self.shape else 1
        data = list(self.data)
        return [data[i : i + width] for i in range(0, len(data), max(width, 1))]

    def expect_shape(self, pattern: Sequence[Optional[int]]) -> None:
        """Raise InvalidInput unless the shape matches `pattern` (None: any)."""
        ok = len(pattern) == len(self.shape) and all(
            p is None or p == d for p, d in zip(pattern, self.shape)
        )
        if not ok:
            want = ["?" if p is None else p for p in pattern]
            raise InvalidInput(f"expected a tensor of shape {want}, got {self.shape}")

    def map(self, f: Callable[[Any], Any]) -> "Tensor":
        return Tensor(self.dtype, self.shape, [f(v) for v in self.data])

    def __repr__(self) -> str:
        return f"Tensor({self.dtype}, {self.shape})"

    def _to_wit(self) -> _types.Tensor:
        _, data = _DATA[self.dtype]
        return _types.Tensor(shape=self.shape, data=data(self.data))

    @staticmethod
    def _from_wit(tensor: _types.Tensor) -> "Tensor":
        return Tensor(_DTYPE_OF[type(tensor.data)], tensor.shape, tensor.data.value)


class Message:
    """What a stage receives and returns: an optional body (bytes with a
    media type), named tensors and named scalar fields, in order."""

    def __init__(
        self,
        tensors: Optional[Dict[str, Tensor]] = None,
        fields: Optional[Dict[str, Scalar]] = None,
        body: Optional[bytes] = None,
        content_type: str = "application/octet-stream",
    ):
        self.tensors: Dict[str, Tensor] = dict(tensors or {})
        self.fields: Dict[str, Scalar] = dict(fields or {})
        self.body = body
        self.content_type = content_type

    @classmethod
    def json(cls, value: Any) -> "Message":
        """A message whose body is `value` as compact JSON with sorted keys."""
        text = _json.dumps(value, separators=(",", ":"), sort_keys=True)
        return cls(body=text.encode(), content_type="application/json")

    @classmethod
    def text(cls, value: str, content_type: str = "text/plain") -> "Message":
        return cls(body=value.encode(), content_type=content_type)

    def tensor(self, name: str) -> Tensor:
        """The tensor `name`, or InvalidInput naming what there is."""
        try:
            return self.tensors[name]
        except KeyError:
            have = ", ".join(self.tensors) or "none"
            raise InvalidInput(f"no tensor named `{name}` in the input (it has: {have})") from None

    def only_tensor(self) -> Tensor:
        if len(self.tensors) != 1:
            raise InvalidInput(f"expected exactly one tensor, got {len(self.tensors)}")
        return next(iter(self.tensors.values()))

    def field(self, name: str, default: Optional[Scalar] = None) -> Optional[Scalar]:
        return self.fields.get(name, default)

    def body_json(self) -> Any:
        """The body parsed as JSON, or InvalidInput saying why not."""
        if self.body is None:
            raise InvalidInput("the request has no body")
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise InvalidInput(f"the body is not JSON: {e}") from None

    def _to_wit(self) -> _types.Message:
        body = None
        if self.body is not None:
            body = _types.Body(content_type=self.content_type, bytes=bytes(self.body))
        return _types.Message(
            body=body,
            tensors=[_types.NamedTensor(name=n, tensor=t._to_wit()) for n, t in self.tensors.items()],
            fields=[_types.Field(name=n, value=_scalar_to_wit(v)) for n, v in self.fields.items()],
        )

    @staticmethod
    def _from_wit(message: _types.Message) -> "Message":
        body, content_type = None, "application/octet-stream"
        if message.body is not None:
            body, content_type = message.body.bytes, message.body.content_type
        return Message(
            tensors={t.name: Tensor._from_wit(t.tensor) for t in message.tensors},
            fields={f.name: f.value.value for f in message.fields},
            body=body,
            content_type=content_type,
        )


def _scalar_to_wit(value: Scalar) -> _types.Scalar:
    # bool first: it is an int in Python.
    if isinstance(value, bool):
        return _types.Scalar_Bool(value)
    if isinstance(value, int):
        return _types.Scalar_Int(value)
    if isinstance(value, float):
        return _types.Scalar_Float(value)
    if isinstance(value, str):
        return _types.Scalar_Text(value)
    raise Internal(f"a field holds a bool, int, float or str, not {type(value).__name__}")


_STAGES: List[type] = []


class Stage:
    """Subclass it and define `run(self, message) -> Message`; the build
    exports the one subclass in `stage.py`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _STAGES.append(cls)

    def run(self, message: Message) -> Message:
        raise NotImplementedError


def _entry() -> Callable[[_types.Message], _types.Message]:
    """The WIT `run` of the stage `stage.py` defines (used by the build)."""
    if len(_STAGES) != 1:
        names = ", ".join(c.__name__ for c in _STAGES) or "none"
        raise RuntimeError(f"stage.py must define exactly one sluice_sdk.Stage subclass (found: {names})")
    stage = _STAGES[0]()

    def run(input: _types.Message) -> _types.Message:
        try:
            output = stage.run(Message._from_wit(input))
            if not isinstance(output, Message):
                raise Internal(f"run returned {type(output).__name__}, not a sluice_sdk.Message")
            return output._to_wit()
        except InvalidInput as e:
            raise Err(_types.StageError_InvalidInput(str(e)))
        except Err:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is the stage's own
            raise Err(_types.StageError_Internal(f"{type(e).__name__}: {e}"))

    return run


class _Config:
    """The deployment's configuration (`sluice deploy --config k=v`)."""

    def get(self, key: str) -> Optional[str]:
        return _config.get(key)

    def all(self) -> Dict[str, str]:
        return dict(_config.get_all())

    def require(self, key: str) -> str:
        value = _config.get(key)
        if value is None:
            raise Internal(f"config `{key}` is not set; deploy with --config {key}=...")
        return value

    def number(self, key: str, default: float) -> float:
        value = _config.get(key)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise Internal(f"config `{key}` must be a number, got {value!r}") from None


class _Log:
    """Levelled records with key/value fields, into the node's log."""

    def _emit(self, level: Any, message: str, fields: Dict[str, Any]) -> None:
        _log.log(level, message, [(k, str(v)) for k, v in fields.items()])

    def debug(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.DEBUG, message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.INFO, message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.WARN, message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit(_log.Level.ERROR, message, fields)


config = _Config()
log = _Log()


def _raise_from(error: Err, what: str) -> None:
    """An `inference` or `features` error as the stage's own exception."""
    value = error.value
    kind = type(value).__name__.split("_")[-1]
    if kind == "InvalidInput":
        raise InvalidInput(f"{what}: {value.value}") from None
    raise Internal(f"{what}: {kind}: {value.value}") from None


class Model:
    """A registry model run by the host (predictor stages): loaded once,
    shared by every instance on the node."""

    def __init__(self, handle: Any, name: str):
        self._handle = handle
        self.name = name

    @classmethod
    def load(cls, name: str, version: Optional[str] = None) -> "Model":
        from wit_world.imports import inference

        try:
            return cls(inference.Model.load(name, version), name)
        except Err as e:
            _raise_from(e, f"loading model `{name}`")
            raise

    def signature(self) -> Dict[str, List[Dict[str, Any]]]:
        """{"inputs": [...], "outputs": [...]}: name, dtype and shape (None: dynamic)."""
        signature = self._handle.signature()

        def info(t: Any) -> Dict[str, Any]:
            return {"name": t.name, "dtype": _DTYPE_OF_ELEMENT[t.element_type], "shape": list(t.shape)}

        return {
            "inputs": [info(t) for t in signature.inputs],
            "outputs": [info(t) for t in signature.outputs],
        }

    def run(self, inputs: Dict[str, Tensor]) -> Dict[str, Tensor]:
        named = [_types.NamedTensor(name=n, tensor=t._to_wit()) for n, t in inputs.items()]
        try:
            outputs = self._handle.run(named)
        except Err as e:
            _raise_from(e, f"running model `{self.name}`")
            raise
        return {t.name: Tensor._from_wit(t.tensor) for t in outputs}


class _Features:
    """Entity-keyed feature tables held by the host (featurizer stages)."""

    def get(self, table: str, entities: Iterable[str], names: Iterable[str]) -> List[List[Optional[Scalar]]]:
        """One row per entity, one value per name; None where missing."""
        from wit_world.imports import features as _features

        try:
            rows = _features.get(table, list(entities), list(names))
        except Err as e:
            _raise_from(e, f"reading table `{table}`")
            raise
        return [[None if v is None else v.value for v in row] for row in rows]


features = _Features()
