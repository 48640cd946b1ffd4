// `{{name}}`: a standard `wasi:http/incoming-handler` component.
//
// `GET /greet?name=NAME` answers `GREETING, NAME` (GREETING from the
// environment: Sluice gives an HTTP function its deploy config there); any
// other path is a 404. The same .wasm runs under `wasmtime serve` and Spin.
import { getEnvironment } from "wasi:cli/environment@0.2.10";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const name = url.searchParams.get("name");
  if (url.pathname === "/greet" && name !== null) {
    // Read per request: the module body runs once, at build time.
    const greeting = new Map(getEnvironment()).get("GREETING") ?? "hello";
    return text(200, `${greeting}, ${name}\n`);
  }
  return text(404, `no such page: ${url.pathname}${url.search}\n`);
}

function text(status, body) {
  return new Response(body, { status, headers: { "content-type": "text/plain" } });
}
