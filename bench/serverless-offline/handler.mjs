// The usual serverless WebSocket broadcast: connection ids in a store
// (Redis here, DynamoDB in most tutorials), and a postToConnection per id.
import { ApiGatewayManagementApiClient, PostToConnectionCommand } from "@aws-sdk/client-apigatewaymanagementapi";
import { createClient } from "redis";

const KEY = "sls-bench:connections";
let redis;
async function store() {
  if (!redis) {
    redis = createClient({ url: process.env.BENCH_REDIS_URL });
    await redis.connect();
  }
  return redis;
}

const api = new ApiGatewayManagementApiClient({
  endpoint: process.env.BENCH_CONNECTIONS_ENDPOINT,
  region: "us-east-1",
  credentials: { accessKeyId: "local", secretAccessKey: "local" },
});

export async function connect(event) {
  await (await store()).sAdd(KEY, event.requestContext.connectionId);
  return { statusCode: 200 };
}

export async function disconnect(event) {
  await (await store()).sRem(KEY, event.requestContext.connectionId);
  return { statusCode: 200 };
}

export async function broadcast(event) {
  const { data } = JSON.parse(event.body);
  const frame = JSON.stringify({ id: "x", type: "call.incoming", tenant_id: "bench", timestamp: Date.now(), data });
  const ids = await (await store()).sMembers(KEY);
  await Promise.all(
    ids.map((ConnectionId) => api.send(new PostToConnectionCommand({ ConnectionId, Data: frame })).catch(() => {})),
  );
  return { statusCode: 200 };
}

export async function ignore() {
  return { statusCode: 200 };
}
