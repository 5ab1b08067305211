// node compose.mjs NAME=URL|NAME=@FILE ... : compose the subgraphs with Apollo's own composition and print the
// supergraph SDL; on failure print each composition error (code and message) and exit 1.
import { composeServices } from "@apollo/composition";
import { parse } from "graphql";
import { parseArgs, sdlOf } from "./subgraphs.mjs";

const subgraphs = parseArgs(process.argv.slice(2));
const services = await Promise.all(
  subgraphs.map(async (subgraph) => ({
    name: subgraph.name,
    url: subgraph.source.startsWith("@") ? `http://${subgraph.name}.invalid/graphql` : subgraph.source,
    typeDefs: parse(await sdlOf(subgraph)),
  })),
);
const result = composeServices(services);
if (result.errors) {
  for (const error of result.errors) console.error(`${error.extensions?.code ?? "ERROR"}: ${error.message}`);
  process.exit(1);
}
process.stdout.write(result.supergraphSdl);
