// node subscribe.mjs WS_URL TOKEN COUNT QUERY [VARIABLES_JSON] : a graphql-ws client that subscribes with the
// token in connection_init, prints each message (data or errors) as one JSON line, and exits after COUNT of them.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token, count, query, variables] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
});

let seen = 0;
const done = (code) => client.dispose().then(() => process.exit(code));
client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : {} },
  {
    next: (message) => {
      console.log(JSON.stringify(message));
      if (++seen >= Number(count)) done(0);
    },
    error: (error) => {
      console.error(`subscription failed: ${JSON.stringify(error?.message ?? error?.reason ?? error)}`);
      done(1);
    },
    complete: () => done(seen >= Number(count) ? 0 : 1),
  },
);
