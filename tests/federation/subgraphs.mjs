// Reading subgraphs named on the command line as NAME=URL (their `_service { sdl }` is fetched) or
// NAME=@FILE (an SDL file), shared by compose.mjs and gateway.mjs.
import { readFileSync } from "node:fs";

export function parseArgs(args) {
  return args.map((arg) => {
    const at = arg.indexOf("=");
    if (at < 1) throw new Error(`expected NAME=URL or NAME=@FILE, got ${arg}`);
    return { name: arg.slice(0, at), source: arg.slice(at + 1) };
  });
}

// A bearer token for subgraphs that want one (lotgraph in production): LOTGRAPH_TOKEN.
export function headers() {
  const token = process.env.LOTGRAPH_TOKEN;
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function sdlOf({ name, source }) {
  if (source.startsWith("@")) return readFileSync(source.slice(1), "utf8");
  const response = await fetch(source, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers() },
    body: JSON.stringify({ query: "{ _service { sdl } }" }),
  });
  const body = await response.json();
  if (!body.data?._service?.sdl) throw new Error(`${name} at ${source} gave no SDL: ${JSON.stringify(body)}`);
  return body.data._service.sdl;
}
