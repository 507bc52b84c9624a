// Types of @switchboard/client.

/** An event as the server sends it. */
export interface SwitchboardEvent<D = unknown> {
  id: string;
  type: string;
  tenant_id: string;
  timestamp: number;
  data: D;
  /** Set by the server for events a verified caller published. */
  sender?: { user_id: string; role: "admin" | "service" | "supervisor" | "agent" };
  /** The channel it was published to (`queue:support`); its offset and epoch are then the channel's own. */
  channel?: string;
  /** Its place in the tenant's history, or its channel's (absent when the deployment keeps none). */
  offset?: number;
  epoch?: string;
}

/** `{"tenant":true}`, `{"user":"42"}`, `{"connection":"<id>"}` or `{"channel":"queue:support"}`. */
export type Target = { tenant: true } | { user: string } | { connection: string } | { channel: string };

export interface PublishedReply {
  type: "published";
  id: string;
  /** A single publish's event. */
  event_id?: string;
  /** A batch's events, in order. */
  event_ids?: string[];
  report: Record<string, number | string>;
}

/** One event of a batch publish. */
export interface PublishRequest {
  type: string;
  target?: Target;
  data?: unknown;
}

/** What the server holds for this connection. */
export interface SubscriptionsReply {
  type: "subscriptions";
  id: string;
  /** Tenant-wide topics. */
  events: string[];
  /** Each channel with its filter. */
  channels: Record<string, string[]>;
}

/** What a channel's handle reports on its own. */
export interface ChannelEvents {
  /** A reconnect replayed what the channel carried meanwhile. */
  recovered: { count: number; missed: number; epoch: string; offset: number };
  /** The channel's history could not prove it holds every event missed: reload this channel's state. */
  gap: { epoch: string | null; offset: number | null };
  /** The server refused the channel (forbidden, invalid_channel, channel_full: it is dropped) or its recovery failed. */
  error: SwitchboardError;
}

export declare const CHANNEL_EVENTS: readonly (keyof ChannelEvents)[];

/** A channel of the tenant: handlers per event type, recovered from its own position after every reconnect. */
export declare class Channel {
  readonly name: string;
  /** Where this channel would recover from, or null. */
  readonly position: Position | null;
  on<K extends keyof ChannelEvents>(name: K, fn: (value: ChannelEvents[K]) => void): () => void;
  /** Events of a topic (`call.incoming`, `call.*`, `*`): the channel's filter is the union of its handlers' topics. */
  on(topic: string, fn: (event: SwitchboardEvent) => void): () => void;
  /** Stops every handler and leaves the channel. */
  leave(): void;
}

export type State = "idle" | "connecting" | "connected" | "disconnected" | "closed";

export interface Position {
  epoch: string;
  offset: number;
  /** The id of the event at `offset`, when known: what lets the server prove it still holds it. */
  id?: string;
}

export interface StateEvents {
  state: State;
  connecting: undefined;
  connected: undefined;
  disconnected: { code?: number; reason?: string };
  /** A reconnect (or rotation) replayed what was missed: `count` events replayed, `missed` of them new here (the others had arrived before the drop). */
  recovered: { count: number; missed: number; epoch: string; offset: number };
  /** Events may have been missed (the history no longer holds them, or it started over): reload your state. With `channel`: that channel's. */
  gap: { epoch: string | null; offset: number | null; channel?: string };
  error: unknown;
  closed: undefined;
}

export interface SwitchboardOptions {
  /** The WebSocket URL: `wss://<api>.execute-api.<region>.amazonaws.com/production`, `ws://127.0.0.1:3001/local`. */
  url: string;
  /** A JWT, or a function asked again on every (re)connect (so an expired token is replaced). */
  token: string | (() => string | Promise<string>);
  /** The WebSocket class; default the global one (Node 22+, browsers). */
  WebSocket?: unknown;
  /** Reconnect waits: full jitter over min(maxMs, baseMs * 2^attempt). Defaults 500 and 30,000. */
  backoff?: {
    baseMs?: number;
    maxMs?: number;
    /** The ceiling during the first `quickForMs` of a run of failures (a fleet meeting the connect quota). Default 2 s. */
    quickMaxMs?: number;
    /** How long a run of failures keeps the quick ceiling before the waits grow to `maxMs`. Default 2 minutes. */
    quickForMs?: number;
  };
  /** Ping this often (under API Gateway's 10-minute idle close). Default 4 minutes. */
  pingIntervalMs?: number;
  /** Rotate to a fresh connection this long after connecting (under the 2-hour limit). Default 110 minutes. */
  rotateAfterMs?: number;
  /** The share of `rotateAfterMs` a rotation comes early by, at random (0.1: in its last tenth). */
  rotateJitter?: number;
  /** The random source of backoff and rotation jitter (default Math.random). */
  random?: () => number;
  /** A request (publish) without a reply this long is rejected. Default 10 s. */
  requestTimeoutMs?: number;
  /** A handshake not open this long is given up and retried. Default 10 s. */
  connectTimeoutMs?: number;
  /** How long a resubscribe waits for `recovered` before the connection counts as failed (15,000). */
  recoverTimeoutMs?: number;
  /** Most events held while a recovery is being put in order; beyond: `gap`. Default 5,000. */
  maxBufferedEvents?: number;
  /** Recover from the highest offset seen at least this long before a drop. Default 5 s. */
  settleMs?: number;
  /** Connect at once (default true); else call `connect()`. */
  autoConnect?: boolean;
}

export declare const STATE_EVENTS: readonly (keyof StateEvents)[];

export declare function backoffDelay(
  attempt: number,
  options?: { baseMs?: number; maxMs?: number },
  random?: () => number,
): number;

export declare function topicMatches(topic: string, type: string): boolean;

export declare class Tracker {
  constructor(options?: { maxSeen?: number; settleMs?: number; now?: () => number });
  epoch: string | null;
  base: { offset: number; id: string | null };
  reset(epoch: string, offset: number, id?: string | null): void;
  accept(event: Partial<SwitchboardEvent>): boolean;
  advance(epoch: string, offset: number, id: string): void;
  since(): Position | null;
}

export declare class SwitchboardError extends Error {
  code: string;
  constructor(code: string, message: string);
}

export declare class Switchboard {
  constructor(options: SwitchboardOptions);
  readonly state: State;
  readonly position: Position | null;
  on<K extends keyof StateEvents>(name: K, fn: (value: StateEvents[K]) => void): () => void;
  on(topic: string, fn: (event: SwitchboardEvent) => void): () => void;
  subscribe(topics: string[], handler: (event: SwitchboardEvent) => void): () => void;
  publish(type: string, target: Target | undefined, data?: unknown): Promise<PublishedReply>;
  /** Several events at once (at most 100): each connection gets one frame with all of its events. */
  publishBatch(events: PublishRequest[]): Promise<PublishedReply>;
  /** The channel `name` (`<namespace>:<name>`); throws a TypeError for another shape. */
  channel(name: string): Channel;
  /** `channel(name)` with a handler per topic: `{ "call.incoming": fn, "queue.stats": fn }`. */
  subscribeChannel(name: string, handlers: Record<string, (event: SwitchboardEvent) => void>): Channel;
  /** What the server holds for this connection. */
  subscriptions(): Promise<SubscriptionsReply>;
  request(message: Record<string, unknown>): Promise<Record<string, unknown>>;
  connect(): Promise<void>;
  close(): void;
}

export default Switchboard;
