// node gateway.mjs PORT NAME=URL ... : Apollo Gateway (on Apollo Server) over the subgraphs, on 127.0.0.1:PORT.
// The client's Authorization header is passed on to every subgraph. Prints "ready URL" once it serves.
import { ApolloGateway, IntrospectAndCompose, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { headers, parseArgs } from "./subgraphs.mjs";

const [port, ...named] = process.argv.slice(2);
const subgraphs = parseArgs(named).map(({ name, source }) => ({ name, url: source }));

class ForwardAuthorization extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set("authorization", context.authorization);
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: new IntrospectAndCompose({ subgraphs, introspectionHeaders: headers() }),
  buildService: ({ url }) => new ForwardAuthorization({ url }),
});
const server = new ApolloServer({ gateway });
const { url } = await startStandaloneServer(server, {
  listen: { host: "127.0.0.1", port: Number(port) },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
console.log(`ready ${url}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await server.stop();
    process.exit(0);
  });
}
