"""`{{name}}`: a standard `wasi:http/incoming-handler` component.

`GET /greet?name=NAME` answers `GREETING, NAME` (GREETING from the
environment: Sluice gives an HTTP function its deploy config there); any
other path is a 404. The same .wasm runs under `wasmtime serve` and Spin.
"""

import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, out: ResponseOutparam) -> None:
        path = request.path_with_query() or ""
        if path.startswith("/greet?name="):
            greeting = os.environ.get("GREETING", "hello")
            status, text = 200, f"{greeting}, {path.removeprefix('/greet?name=')}\n"
        else:
            status, text = 404, f"no such page: {path}\n"
        respond(out, status, text.encode())


def respond(out: ResponseOutparam, status: int, body: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(out, Ok(response))
    with outgoing.write() as stream:
        stream.blocking_write_and_flush(body)
    OutgoingBody.finish(outgoing, None)
