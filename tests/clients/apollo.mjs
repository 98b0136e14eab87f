// Apollo Client 4 as a frontend app configures it: automatic persisted queries
// (createPersistedQueryLink) over BatchHttpLink, client awareness headers, a
// normalised cache that knows the Node interface. Run by tests/frontend_clients.rs:
//   node apollo.mjs <graphql url> <bearer token> <workspace id>
// Prints one JSON line of what it saw; exits non-zero on any failure.
import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import { BatchHttpLink } from "@apollo/client/link/batch-http";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { createHash } from "node:crypto";

const [url, token, workspaceId] = process.argv.slice(2);
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

// Every HTTP request the link sends: its method and the operations it carried.
const requests = [];
const recordingFetch = async (input, init = {}) => {
  const body = init.body ? JSON.parse(init.body) : null;
  const operations = (Array.isArray(body) ? body : [body]).filter(Boolean);
  requests.push({
    method: init.method ?? "GET",
    operations: operations.map((op) => ({ name: op.operationName, withText: typeof op.query === "string" })),
  });
  return fetch(input, init);
};

const client = new ApolloClient({
  clientAwareness: { name: "cortex-client-test", version: "1.0.0" },
  cache: new InMemoryCache({ possibleTypes: { Node: ["Workspace", "Conversation", "Message", "User"] } }),
  link: createPersistedQueryLink({ sha256 }).concat(
    new BatchHttpLink({
      uri: url,
      headers: { authorization: `Bearer ${token}` },
      batchMax: 10,
      batchInterval: 20,
      fetch: recordingFetch,
    }),
  ),
});

const ME = gql`query Me { me { id userId } }`;
const WORKSPACES = gql`
  query Workspaces {
    workspaces(first: 10) { nodes { id name conversations(first: 5) { edges { cursor node { id topic } } } } }
  }
`;
const REFETCH = gql`
  query Refetch($id: ID!) { node(id: $id) { id ... on Workspace { name description } } }
`;
const RENAME = gql`
  mutation Rename($id: ID!, $name: String!) { updateWorkspace(id: $id, input: { name: $name }) { id name } }
`;

const fail = (what, value) => {
  console.log(JSON.stringify({ ok: false, what, value, requests }));
  process.exit(1);
};

// 1. Two queries at once: one batch of hashes, unknown to the server, then the
//    link's retry with the texts.
const [me, workspaces] = await Promise.all([
  client.query({ query: ME, fetchPolicy: "network-only" }),
  client.query({ query: WORKSPACES, fetchPolicy: "network-only" }),
]);
if (me.error || workspaces.error) fail("first queries", { me: me.error, workspaces: workspaces.error });
const firstRound = requests.length;

// 2. The same again: the hashes alone, answered.
const before = requests.length;
const again = await Promise.all([
  client.query({ query: ME, fetchPolicy: "network-only" }),
  client.query({ query: WORKSPACES, fetchPolicy: "network-only" }),
]);
const secondRound = requests.slice(before);

// 3. Relay-style refetch through node(id:), then a mutation, then the refetch
//    sees it; the cache holds one Workspace entry for both.
const refetched = await client.query({ query: REFETCH, variables: { id: workspaceId }, fetchPolicy: "network-only" });
const renamed = await client.mutate({ mutation: RENAME, variables: { id: workspaceId, name: "Renamed by Apollo" } });
const after = await client.query({ query: REFETCH, variables: { id: workspaceId }, fetchPolicy: "network-only" });
const cacheId = client.cache.identify({ __typename: "Workspace", id: workspaceId });
const cached = client.cache.extract()[cacheId];

console.log(
  JSON.stringify({
    ok: true,
    me: me.data.me,
    workspaces: workspaces.data.workspaces.nodes,
    firstRound,
    secondRound,
    again: again.map((r) => r.data),
    refetched: refetched.data.node,
    renamed: renamed.data.updateWorkspace,
    after: after.data.node,
    cached,
    requests,
  }),
);
