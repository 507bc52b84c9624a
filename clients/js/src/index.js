// @switchboard/client: the browser (and Node >= 22) client of Switchboard.
//
// It keeps one logical subscription alive across any number of WebSocket
// connections: it reconnects with exponential backoff and full jitter,
// resubscribes with `since` so the server replays what was missed (in
// offset order, duplicates dropped by offset), says `gap` when the server
// cannot (`recovered:false`: reload your state), pings under API Gateway's
// 10-minute idle limit, and rotates to a fresh connection before the
// 2-hour limit without a gap. No runtime dependencies.

/** Names of the client's own events (everything else `on` takes is a topic). */
export const STATE_EVENTS = Object.freeze([
  "state", "connecting", "connected", "disconnected", "recovered", "gap", "error", "closed",
]);

const REPLY_TYPES = new Set([
  "subscribed", "unsubscribed", "subscriptions", "pong", "synced", "published", "error", "recovered", "reconnect",
]);

/** A channel's name: `<namespace>:<name>` (the server checks the rest). */
const CHANNEL_NAME = /^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9._@+=-]{1,128}$/;

/** What a channel's handle reports on its own (everything else its `on` takes is a topic). */
export const CHANNEL_EVENTS = Object.freeze(["recovered", "gap", "error"]);

/** Codes that refuse a channel for good: subscribing again would be refused again. */
const CHANNEL_REFUSALS = new Set(["forbidden", "invalid_channel", "channel_full", "too_many_subscriptions", "unknown_event_type"]);

/** A `since` that asks only for the history's position (nothing is replayed). */
const POSITION_ONLY = Object.freeze({ epoch: "0", offset: Number.MAX_SAFE_INTEGER });

/**
 * Exponential backoff with full jitter: a random wait in [0, min(max, base * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30_000 } = {}, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

/** Does `topic` (`call.incoming`, `call.*`, `*`) match the event type `type`? */
export function topicMatches(topic, type) {
  if (topic === "*") return true;
  if (topic.endsWith(".*")) return type.startsWith(topic.slice(0, -1));
  return topic === type;
}

/**
 * What the client knows of its place in the tenant's history: which
 * recent events it has seen (to drop duplicates, by event id: a bounded
 * set), and from where to recover after a drop. The position only
 * computes the next `since`: an event below it that was never seen (a
 * late delivery, a queued fan-out's retried post) is still delivered.
 */
export class Tracker {
  /** @param {{maxSeen?: number, settleMs?: number, now?: () => number}} [options] */
  constructor({ maxSeen = 10_000, settleMs = 5_000, now = Date.now } = {}) {
    this.maxSeen = maxSeen;
    this.settleMs = settleMs;
    this.now = now;
    this.epoch = null;
    /** The position to recover from: an offset and the id of the event there (null: not known). */
    this.base = { offset: 0, id: null };
    /** Recent positions not yet settled, in arrival order: [offset, id, arrived at]. */
    this.recent = [];
    this.seenIds = new Set();
    this.idOrder = [];
  }

  /** Starts over in `epoch` at `offset` (the event `id` there, when known): a fresh history, or a gap. */
  reset(epoch, offset, id = null) {
    this.epoch = epoch;
    this.base = { offset, id: typeof id === "string" ? id : null };
    this.recent = [];
  }

  /** Records an event; false when it is a duplicate (its id already seen). */
  accept(event) {
    if (typeof event.id === "string") {
      if (this.seenIds.has(event.id)) return false;
      this.seenIds.add(event.id);
      this.idOrder.push(event.id);
      if (this.idOrder.length > this.maxSeen) this.seenIds.delete(this.idOrder.shift());
    }
    if (Number.isSafeInteger(event.offset) && typeof event.epoch === "string") {
      // A history that started over (a lost Redis): go on in it.
      if (event.epoch !== this.epoch) this.reset(event.epoch, event.offset - 1);
      this.recent.push([event.offset, typeof event.id === "string" ? event.id : null, this.now()]);
      this.settle();
    }
    return true;
  }

  /** Moves the position past what is settled (seen longer ago than `settleMs`), within the bound. */
  settle() {
    const cutoff = this.now() - this.settleMs;
    while (this.recent.length > 0 && (this.recent[0][2] <= cutoff || this.recent.length > this.maxSeen)) {
      const [offset, id] = this.recent.shift();
      if (offset > this.base.offset) this.base = { offset, id };
    }
  }

  /** A recovery proved every event up to `offset` (the event `id`) was given: the position moves there. */
  advance(epoch, offset, id) {
    if (epoch === this.epoch && Number.isSafeInteger(offset) && offset > this.base.offset && typeof id === "string") {
      this.base = { offset, id };
    }
  }

  /**
   * Where to recover from: the highest position seen at least `settleMs`
   * ago (a later one may have overtaken an event still in flight; the few
   * replayed twice are dropped as duplicates), with the id of its event
   * so the server can prove it still holds it. Null before any position.
   */
  since() {
    this.settle();
    if (this.epoch === null) return null;
    const since = { epoch: this.epoch, offset: this.base.offset };
    if (this.base.id !== null) since.id = this.base.id;
    return since;
  }
}

class Emitter {
  constructor() {
    this.listeners = new Map();
  }
  add(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }
  emit(name, value, onError) {
    for (const fn of [...(this.listeners.get(name) ?? [])]) {
      try {
        fn(value);
      } catch (error) {
        onError(error);
      }
    }
  }
}

/** An error the server answered (`{"type":"error","code","message"}`) or the client raised. */
export class SwitchboardError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
  }
}

/** What the client keeps of one channel: its handlers by topic, its own place in its own history. */
class ChannelSub {
  constructor(name, settleMs) {
    this.name = name;
    /** topic -> handlers */
    this.handlers = new Map();
    this.tracker = new Tracker({ settleMs });
    this.emitter = new Emitter();
  }

  /** The filter the server is asked for: the handlers' topics, or `*` when one wants everything. */
  filter() {
    const topics = [...this.handlers.keys()];
    return topics.includes("*") ? ["*"] : topics.sort();
  }
}

/**
 * A channel of the tenant, as `client.channel("queue:support")` returns it:
 * handlers per event type, recovered from the channel's own position after
 * every reconnect.
 *
 * ```js
 * const queue = sb.channel("queue:support");
 * queue.on("call.incoming", (event) => ring(event));
 * queue.on("queue.stats", (event) => wallboard(event.data));
 * queue.on("gap", () => reloadQueue());
 * queue.leave();
 * ```
 */
export class Channel {
  constructor(client, sub) {
    this.client = client;
    this.sub = sub;
  }

  /** The channel's name (`queue:support`). */
  get name() {
    return this.sub.name;
  }

  /** Where this channel would recover from, or null. */
  get position() {
    return this.sub.tracker.since();
  }

  /** Listens to the channel's `recovered`, `gap` or `error`, or to its events of a topic (`call.*`). */
  on(name, fn) {
    if (typeof fn !== "function") throw new TypeError("on: handler must be a function");
    if (CHANNEL_EVENTS.includes(name)) return this.sub.emitter.add(name, fn);
    return this.client.channelHandler(this.sub, name, fn);
  }

  /** Stops every handler and leaves the channel. */
  leave() {
    this.client.leave(this.sub);
  }
}

/**
 * One WebSocket and what is in flight on it: the recovery it is doing
 * (events buffered until `recovered`, then delivered in offset order).
 */
class Link {
  constructor(client, socket) {
    this.client = client;
    this.socket = socket;
    this.opened = false;
    /** Set once its end was handled (a failed handshake may say so twice, or not at all). */
    this.ended = false;
    this.closedByUs = false;
    this.recovering = false;
    this.buffer = [];
    /** Channel recoveries in flight: channel -> {id, buffer, timer, overflowed}. */
    this.channelRecoveries = new Map();
  }

  send(message) {
    if (this.socket.readyState !== 1) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** Closes the socket; with `reconnect`, the client treats it as a drop. */
  close(code = 1000, reason = "client closed", { reconnect = false } = {}) {
    this.closedByUs = !reconnect;
    try {
      this.socket.close(code, reason);
    } catch {
      // Already closing.
    }
  }
}

/**
 * The client.
 *
 * ```js
 * const sb = new Switchboard({ url: "wss://ws.example.com/production", token: async () => fetchJwt() });
 * const off = sb.subscribe(["call.*"], (event) => render(event));
 * sb.on("gap", () => reloadState());
 * await sb.publish("chat.message", { user: "42" }, { text: "hi" });
 * ```
 */
export class Switchboard {
  /**
   * @param {object} options
   * @param {string} options.url the WebSocket URL (`wss://.../production`, `ws://127.0.0.1:3001/local`)
   * @param {string | (() => string | Promise<string>)} options.token a JWT, or a function asked again on every (re)connect
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket class (default: the global one)
   */
  constructor({
    url,
    token,
    WebSocket: WS = globalThis.WebSocket,
    backoff = {},
    pingIntervalMs = 4 * 60_000,
    rotateAfterMs = 110 * 60_000,
    rotateJitter = 0.1,
    random = Math.random,
    requestTimeoutMs = 10_000,
    connectTimeoutMs = 10_000,
    recoverTimeoutMs = 15_000,
    maxBufferedEvents = 5_000,
    settleMs = 5_000,
    autoConnect = true,
  } = {}) {
    if (typeof url !== "string") throw new TypeError("Switchboard: url must be a string");
    if (typeof token !== "string" && typeof token !== "function") {
      throw new TypeError("Switchboard: token must be a string or a function returning one");
    }
    if (typeof WS !== "function") {
      throw new TypeError("Switchboard: no WebSocket class (Node < 22: pass { WebSocket } or run with --experimental-websocket)");
    }
    this.url = url;
    this.token = token;
    this.WS = WS;
    this.backoff = {
      baseMs: backoff.baseMs ?? 500,
      maxMs: backoff.maxMs ?? 30_000,
      quickMaxMs: backoff.quickMaxMs ?? 2_000,
      quickForMs: backoff.quickForMs ?? 120_000,
    };
    /** When the current run of failed attempts began (null: none). */
    this.failingSince = null;
    this.pingIntervalMs = pingIntervalMs;
    this.rotateAfterMs = rotateAfterMs;
    this.rotateJitter = Math.min(Math.max(rotateJitter, 0), 1);
    this.random = random;
    this.requestTimeoutMs = requestTimeoutMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.recoverTimeoutMs = recoverTimeoutMs;
    /** Live subscribes in flight: request id -> the topics they add. */
    this.refusable = new Map();
    this.maxBufferedEvents = maxBufferedEvents;
    this.tracker = new Tracker({ settleMs });
    this.emitter = new Emitter();
    /** topic -> handlers */
    this.handlers = new Map();
    /** channel name -> ChannelSub */
    this.channels = new Map();
    this.settleMs = settleMs;
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.state = "idle";
    this.link = null;
    this.rotating = null;
    this.timers = new Set();
    this.everConnected = false;
    if (autoConnect) this.connect();
  }

  /** Listens to a state event (`connected`, `gap`, ...) or to events of a topic (`presence.online`, `call.*`). */
  on(name, fn) {
    if (STATE_EVENTS.includes(name)) return this.emitter.add(name, fn);
    return this.subscribe([name], fn);
  }

  /**
   * Calls `handler(event)` for every event matching one of `topics`;
   * returns the function that stops it (and unsubscribes topics nobody
   * else listens to).
   */
  subscribe(topics, handler) {
    if (!Array.isArray(topics) || topics.length === 0 || topics.some((t) => typeof t !== "string")) {
      throw new TypeError("subscribe: topics must be a non-empty list of strings");
    }
    if (typeof handler !== "function") throw new TypeError("subscribe: handler must be a function");
    const fresh = [];
    for (const topic of topics) {
      if (!this.handlers.has(topic)) {
        this.handlers.set(topic, new Set());
        fresh.push(topic);
      }
      this.handlers.get(topic).add(handler);
    }
    if (fresh.length > 0 && this.link?.opened && !this.link.recovering) {
      if (this.tracker.epoch === null) {
        // No position yet: this subscribe also learns where the history stands.
        this.resubscribe(this.link, fresh);
      } else {
        // Refused (an unknown topic, too many): the server subscribed none
        // of them, and the client forgets them, so no later resubscribe
        // carries them.
        const id = `sub-${this.nextId++}`;
        this.refusable.set(id, fresh);
        this.later(this.requestTimeoutMs, () => this.refusable.delete(id));
        this.link.send({ action: "subscribe", events: fresh, id });
      }
    }
    return () => {
      const gone = [];
      for (const topic of topics) {
        const set = this.handlers.get(topic);
        if (!set) continue;
        set.delete(handler);
        if (set.size === 0) {
          this.handlers.delete(topic);
          gone.push(topic);
        }
      }
      if (gone.length > 0 && this.link?.opened) this.link.send({ action: "unsubscribe", events: gone });
    };
  }

  /**
   * The channel `name` (`queue:support`): add handlers with its `on`; the
   * channel is subscribed with the union of their topics as its filter,
   * and recovered from its own position after every reconnect.
   */
  channel(name) {
    if (typeof name !== "string" || !CHANNEL_NAME.test(name)) {
      throw new TypeError(`channel: '${name}' is not <namespace>:<name>, e.g. queue:support`);
    }
    let sub = this.channels.get(name);
    if (!sub) {
      sub = new ChannelSub(name, this.settleMs);
      this.channels.set(name, sub);
    }
    return new Channel(this, sub);
  }

  /** `channel(name)` with handlers per event type: `{ "call.incoming": fn, "queue.stats": fn }`. */
  subscribeChannel(name, handlers) {
    const channel = this.channel(name);
    for (const [topic, fn] of Object.entries(handlers ?? {})) channel.on(topic, fn);
    return channel;
  }

  /**
   * Publishes an event (the server checks the token's role); resolves
   * with the `published` reply, rejects with a SwitchboardError. A target
   * is `{user}`, `{connection}`, `{channel: "queue:support"}` or the tenant (absent).
   */
  publish(type, target, data) {
    return this.request({ action: "publish", type, target, data });
  }

  /**
   * Publishes several events at once (`[{type, target, data}, ...]`, at
   * most 100): each connection gets one frame with all of its events.
   * Resolves with the `published` reply (`event_ids`, in order).
   */
  publishBatch(events) {
    return this.request({ action: "publish", events });
  }

  /** The connection's subscriptions, as the server has them: `{events, channels}`. */
  subscriptions() {
    return this.request({ action: "subscriptions" });
  }

  /** Sends a request and resolves with the reply carrying its id. */
  request(message) {
    return new Promise((resolve, reject) => {
      const link = this.link;
      if (!link?.opened) {
        reject(new SwitchboardError("not_connected", `not connected (state: ${this.state})`));
        return;
      }
      const id = `r${this.nextId++}`;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SwitchboardError("timeout", `no reply within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      if (!link.send({ ...message, id })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new SwitchboardError("not_connected", "the connection closed"));
      }
    });
  }

  /** Closes for good. */
  close() {
    this.setState("closed");
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.rejectPending("closed", "the client was closed");
    this.link?.close(1000, "client closed");
    this.rotating?.close(1000, "client closed");
    this.link = null;
    this.rotating = null;
  }

  /** The position the client would recover from, or null. */
  get position() {
    return this.tracker.since();
  }

  // ------------------------------------------------------------------ inner

  setState(state, detail) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this.emit("state", state);
    this.emit(state, detail);
  }

  emit(name, value) {
    this.emitter.emit(name, value, (error) => {
      if (name !== "error") this.emit("error", error);
    });
  }

  later(ms, fn) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  cancel(t) {
    clearTimeout(t);
    this.timers.delete(t);
  }

  async freshToken() {
    return typeof this.token === "function" ? await this.token() : this.token;
  }

  /** Opens a link; with `rotation`, beside the current one. */
  async connect(rotation = false) {
    if (this.state === "closed") return;
    if (!rotation) this.setState("connecting");
    let token;
    try {
      token = await this.freshToken();
    } catch (error) {
      this.emit("error", error);
      if (!rotation) this.retry();
      return;
    }
    if (this.state === "closed") return;
    let socket;
    try {
      socket = new this.WS(this.url, ["switchboard", token]);
    } catch (error) {
      this.emit("error", error);
      if (!rotation) this.retry();
      return;
    }
    const link = new Link(this, socket);
    if (rotation) this.rotating = link;
    else this.link = link;
    socket.onopen = () => this.opened(link);
    socket.onmessage = (m) => this.received(link, m.data);
    // A handshake that fails may fire only `error` (Node 20's WebSocket
    // never fires `close` then), and one into a black hole fires nothing:
    // both end the link here.
    // (Closing a socket still connecting fires `error` again, at once.)
    const failed = (reason) => {
      if (link.opened || link.ended) return;
      this.closed(link, { code: 1006, reason });
      link.close(4008, reason, { reconnect: true });
    };
    socket.onerror = () => failed("connection failed");
    socket.onclose = (e) => this.closed(link, e);
    link.openTimer = this.later(this.connectTimeoutMs, () => failed("connect timeout"));
  }

  opened(link) {
    this.cancel(link.openTimer);
    if (this.state === "closed") return link.close();
    link.opened = true;
    const topics = [...this.handlers.keys()];
    if (topics.length > 0) this.resubscribe(link, topics);
    for (const sub of this.channels.values()) {
      if (sub.handlers.size > 0) this.recoverChannel(link, sub);
    }
    this.ready(link);
    const ping = () => {
      if (link.socket.readyState !== 1) return;
      link.send({ action: "ping" });
      link.pingTimer = this.later(this.pingIntervalMs, ping);
    };
    link.pingTimer = this.later(this.pingIntervalMs, ping);
    link.rotateTimer = this.later(this.rotationDelay(), () => this.rotate());
  }

  /**
   * When this connection rotates: `rotateAfterMs`, less a random part of
   * `rotateJitter` of it. A fleet that connected at once (after an outage)
   * does not rotate at once, so its reconnects do not meet API Gateway's
   * new-connection quota together.
   */
  rotationDelay() {
    return Math.round(this.rotateAfterMs * (1 - this.rotateJitter * this.random()));
  }

  /**
   * Subscribes `link` to `topics` with `since`: the server replays what was
   * missed (buffered here until `recovered`, then delivered in offset
   * order). Without a position yet, `since` only asks where the history
   * stands (nothing is replayed).
   */
  resubscribe(link, topics) {
    link.recovering = true;
    link.recoverId = `recover-${this.nextId++}`;
    link.send({ action: "subscribe", events: topics, since: this.tracker.since() ?? POSITION_ONLY, id: link.recoverId });
    this.cancel(link.recoverTimer);
    link.recoverTimer = this.later(this.recoverTimeoutMs, () =>
      this.recoveryFailed(link, { type: "error", code: "timeout", message: "no recovered reply in time" }),
    );
  }

  /**
   * The resubscribe was answered with something other than `recovered`:
   * an error, or a failure of API Gateway's own (no `type`), or nothing
   * in time. Topics the server refuses by name are dropped (with an error
   * event) and the rest subscribed again; anything else fails the
   * connection: closed, and reconnected with backoff, then recovered.
   */
  recoveryFailed(link, msg) {
    if (!link.recovering || link.ended) return;
    this.cancel(link.recoverTimer);
    const code = typeof msg.code === "string" ? msg.code : "internal_error";
    const message = typeof msg.message === "string" ? msg.message : JSON.stringify(msg);
    this.emit("error", new SwitchboardError(code, `recovery failed: ${message}`));
    const topics = [...this.handlers.keys()];
    let refused = [];
    if (code === "unknown_event_type" || code === "forbidden") {
      refused = topics.filter((t) => message.includes(`'${t}'`));
    } else if (code === "too_many_subscriptions") {
      // "at most N topics per connection": the newest beyond N go.
      const limit = Number(/at most (\d+)/.exec(message)?.[1]);
      if (Number.isSafeInteger(limit) && limit > 0) refused = topics.slice(limit);
    }
    for (const topic of refused) this.handlers.delete(topic);
    const rest = [...this.handlers.keys()];
    if (refused.length > 0 && rest.length > 0) {
      this.resubscribe(link, rest);
      return;
    }
    if (refused.length > 0) {
      link.recovering = false;
      link.buffer = [];
      this.ready(link);
      return;
    }
    // Handled now: a server gone silent may never answer the close.
    link.close(4000, `recovery failed (${code})`, { reconnect: true });
    this.closed(link, { code: 4000, reason: `recovery failed (${code})` });
  }

  received(link, data) {
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      this.emit("error", new SwitchboardError("invalid_json", "the server sent something that is not JSON"));
      return;
    }
    this.handle(link, msg);
  }

  /** One message: a batch (each of its events in turn), an event or a reply. */
  handle(link, msg) {
    if (msg === null || typeof msg !== "object") return;
    if (msg.type === "batch" && Array.isArray(msg.events)) {
      for (const event of msg.events) this.handle(link, event);
      return;
    }
    if (typeof msg.tenant_id === "string" && typeof msg.type === "string" && !REPLY_TYPES.has(msg.type)) {
      if (typeof msg.channel === "string") {
        this.channelEvent(link, msg);
        return;
      }
      if (link.recovering) {
        if (link.buffer.length >= this.maxBufferedEvents) {
          // Too much at once to order: say so rather than hold it all.
          link.buffer = [];
          link.overflowed = true;
        } else {
          link.buffer.push(msg);
        }
        return;
      }
      this.deliver(msg);
      return;
    }
    this.reply(link, msg);
  }

  /** Hands a tenant-wide event to its handlers; false when it was a duplicate. */
  deliver(event) {
    return this.handOut(this.tracker, this.handlers, event, (detail) => this.emit("gap", detail));
  }

  /**
   * Hands `event` to the `handlers` (topic -> set) whose topic matches it,
   * once (`tracker` drops what it has seen); `gap` first when the event's
   * epoch is a new one (the history started over: what came before is unknown).
   */
  handOut(tracker, handlers, event, gap) {
    const known = tracker.epoch;
    if (known !== null && typeof event.epoch === "string" && event.epoch !== known) {
      gap({ epoch: event.epoch, offset: event.offset ?? null });
    }
    if (!tracker.accept(event)) return false;
    for (const [topic, set] of handlers) {
      if (!topicMatches(topic, event.type)) continue;
      for (const fn of [...set]) {
        try {
          fn(event);
        } catch (error) {
          this.emit("error", error);
        }
      }
    }
    return true;
  }

  reply(link, msg) {
    if (typeof msg.id === "string" && msg.id.startsWith("channel-")) {
      for (const [name, rec] of link.channelRecoveries) {
        if (rec.id !== msg.id) continue;
        const sub = this.channels.get(name);
        if (!sub || msg.type === "subscribed") return;
        if (msg.type === "recovered") this.channelRecovered(link, sub, msg);
        else this.channelRecoveryFailed(link, sub, msg);
        return;
      }
      return;
    }
    if (!link.recovering && link.channelRecoveries.size > 0 && typeof msg.type !== "string") {
      // API Gateway's own failure ({"message": ...}) while channels recover: start over.
      const [name] = link.channelRecoveries.keys();
      this.channelRecoveryFailed(link, this.channels.get(name), msg);
      return;
    }
    if (link.recovering && (msg.id === link.recoverId || typeof msg.type !== "string")) {
      if (msg.type === "subscribed") return;
      if (msg.type === "recovered") {
        this.recovered(link, msg);
        return;
      }
      this.recoveryFailed(link, msg);
      return;
    }
    if (msg.id && this.refusable.has(msg.id)) {
      const topics = this.refusable.get(msg.id);
      this.refusable.delete(msg.id);
      if (msg.type === "error") {
        for (const topic of topics) this.handlers.delete(topic);
        this.emit("error", new SwitchboardError(msg.code, `subscribe ${topics.join(", ")} refused: ${msg.message}`));
      }
      return;
    }
    if (msg.id && this.pending.has(msg.id)) {
      const { resolve, reject, timer } = this.pending.get(msg.id);
      clearTimeout(timer);
      this.pending.delete(msg.id);
      if (msg.type === "error") reject(new SwitchboardError(msg.code, msg.message));
      else resolve(msg);
      return;
    }
    switch (msg.type) {
      case "recovered":
        this.recovered(link, msg);
        break;
      case "reconnect":
        this.rotate();
        break;
      case "error":
        this.emit("error", new SwitchboardError(msg.code, msg.message));
        break;
      default:
        break;
    }
  }

  recovered(link, msg) {
    this.cancel(link.recoverTimer);
    link.recovering = false;
    const buffered = link.buffer.sort((a, b) => (a.offset ?? 0) - (b.offset ?? 0));
    link.buffer = [];
    // Without a position there was nothing known to be missed.
    const first = this.tracker.epoch === null;
    let missed = 0;
    if (msg.recovered === true && !link.overflowed) {
      for (const event of buffered) if (this.deliver(event)) missed += 1;
      this.tracker.advance(msg.epoch, msg.offset, msg.event_id);
    } else {
      // Nothing was replayed: go on from the server's position; events
      // that came live meanwhile are newer than it.
      if (typeof msg.epoch === "string") this.tracker.reset(msg.epoch, msg.offset ?? 0, msg.event_id);
      for (const event of buffered) this.deliver(event);
      if (!first) this.emit("gap", { epoch: msg.epoch ?? null, offset: msg.offset ?? null });
    }
    link.overflowed = false;
    if (this.everConnected && msg.recovered === true) {
      link.recoveredDetail = { count: msg.count, missed, epoch: msg.epoch, offset: msg.offset };
    }
    this.ready(link);
  }

  /**
   * When every recovery of `link` (the tenant's topics and each channel)
   * is done: a rotating link takes over from the old one, and the client
   * is `connected`.
   */
  ready(link) {
    if (!link.opened || link.ended || link.recovering || link.channelRecoveries.size > 0) return;
    if (!link.isReady) {
      link.isReady = true;
      if (link === this.rotating) {
        // The new connection has caught up: the old one can go.
        const old = this.link;
        this.link = link;
        this.rotating = null;
        if (old) this.retire(old);
      }
      if (link !== this.link) return;
      this.attempt = 0;
      this.everConnected = true;
      this.setState("connected");
    }
    if (link === this.link && link.recoveredDetail) this.emit("recovered", link.recoveredDetail);
    link.recoveredDetail = null;
  }

  // ---------------------------------------------------------------- channels

  /** Adds `fn` for `topic` on a channel; the filter grows on the server. Returns what removes it. */
  channelHandler(sub, topic, fn) {
    if (typeof topic !== "string" || topic.length === 0) throw new TypeError("on: the topic must be a string");
    if (this.channels.get(sub.name) !== sub) this.channels.set(sub.name, sub);
    const before = sub.filter().join(" ");
    if (!sub.handlers.has(topic)) sub.handlers.set(topic, new Set());
    sub.handlers.get(topic).add(fn);
    if (sub.filter().join(" ") !== before && this.link?.opened) this.recoverChannel(this.link, sub);
    return () => {
      const set = sub.handlers.get(topic);
      if (!set) return;
      set.delete(fn);
      if (set.size > 0) return;
      sub.handlers.delete(topic);
      if (sub.handlers.size === 0) this.leave(sub);
      else if (this.link?.opened) this.recoverChannel(this.link, sub);
    };
  }

  /** Leaves a channel: no more handlers, no more subscription. */
  leave(sub) {
    if (this.channels.get(sub.name) !== sub) return;
    this.channels.delete(sub.name);
    sub.handlers.clear();
    for (const link of [this.link, this.rotating]) {
      if (!link) continue;
      const rec = link.channelRecoveries.get(sub.name);
      if (rec) {
        this.cancel(rec.timer);
        link.channelRecoveries.delete(sub.name);
        this.ready(link);
      }
      if (link.opened) link.send({ action: "unsubscribe", channel: sub.name });
    }
  }

  /**
   * Subscribes `link` to a channel with its filter and its own `since`:
   * the server replays what the channel carried meanwhile (buffered until
   * its `recovered`, then delivered in offset order). Without a position
   * yet, `since` only asks where the channel's history stands.
   */
  recoverChannel(link, sub) {
    const old = link.channelRecoveries.get(sub.name);
    if (old) this.cancel(old.timer);
    const id = `channel-${this.nextId++}`;
    const rec = { id, buffer: old?.buffer ?? [], overflowed: old?.overflowed ?? false };
    link.channelRecoveries.set(sub.name, rec);
    link.send({ action: "subscribe", channel: sub.name, events: sub.filter(), since: sub.tracker.since() ?? POSITION_ONLY, id });
    rec.timer = this.later(this.recoverTimeoutMs, () =>
      this.channelRecoveryFailed(link, sub, { type: "error", code: "timeout", message: "no recovered reply in time" }),
    );
  }

  /** A channel's event: buffered while the channel recovers on this link, else delivered. */
  channelEvent(link, event) {
    const sub = this.channels.get(event.channel);
    if (!sub) return;
    const rec = link.channelRecoveries.get(sub.name);
    if (rec) {
      if (rec.buffer.length >= this.maxBufferedEvents) {
        rec.buffer = [];
        rec.overflowed = true;
      } else {
        rec.buffer.push(event);
      }
      return;
    }
    if (link === this.link || link === this.rotating) this.deliverChannel(sub, event);
  }

  /** Hands a channel's event to its handlers; false when it was a duplicate. */
  deliverChannel(sub, event) {
    return this.handOut(sub.tracker, sub.handlers, event, (detail) => this.channelGap(sub, detail));
  }

  channelGap(sub, detail) {
    sub.emitter.emit("gap", detail, (error) => this.emit("error", error));
    this.emit("gap", { ...detail, channel: sub.name });
  }

  /** The answer to a channel's subscribe: its recovery is done, replayed or not. */
  channelRecovered(link, sub, msg) {
    const rec = link.channelRecoveries.get(sub.name);
    if (!rec) return;
    this.cancel(rec.timer);
    link.channelRecoveries.delete(sub.name);
    const buffered = rec.buffer.sort((a, b) => (a.offset ?? 0) - (b.offset ?? 0));
    const first = sub.tracker.epoch === null;
    let missed = 0;
    if (msg.recovered === true && !rec.overflowed) {
      for (const event of buffered) if (this.deliverChannel(sub, event)) missed += 1;
      sub.tracker.advance(msg.epoch, msg.offset, msg.event_id);
      if (!first) {
        sub.emitter.emit("recovered", { count: msg.count, missed, epoch: msg.epoch, offset: msg.offset }, (e) => this.emit("error", e));
      }
    } else {
      if (typeof msg.epoch === "string") sub.tracker.reset(msg.epoch, msg.offset ?? 0, msg.event_id);
      for (const event of buffered) this.deliverChannel(sub, event);
      if (!first) this.channelGap(sub, { epoch: msg.epoch ?? null, offset: msg.offset ?? null });
    }
    this.ready(link);
  }

  /**
   * A channel's subscribe answered with an error (or nothing in time). A
   * refusal that would be made again (forbidden, an invalid channel, a
   * full one) drops the channel and says so; anything else fails the
   * connection, which reconnects and recovers.
   */
  channelRecoveryFailed(link, sub, msg) {
    const rec = link.channelRecoveries.get(sub.name);
    if (!rec || link.ended) return;
    this.cancel(rec.timer);
    const code = typeof msg.code === "string" ? msg.code : "internal_error";
    const message = typeof msg.message === "string" ? msg.message : JSON.stringify(msg);
    const error = new SwitchboardError(code, `channel ${sub.name}: ${message}`);
    sub.emitter.emit("error", error, (e) => this.emit("error", e));
    this.emit("error", error);
    if (CHANNEL_REFUSALS.has(code)) {
      link.channelRecoveries.delete(sub.name);
      this.channels.delete(sub.name);
      sub.handlers.clear();
      this.ready(link);
      return;
    }
    link.close(4000, `channel recovery failed (${code})`, { reconnect: true });
    this.closed(link, { code: 4000, reason: `channel recovery failed (${code})` });
  }

  retire(link) {
    this.cancel(link.pingTimer);
    this.cancel(link.rotateTimer);
    link.close(1000, "rotated");
  }

  rotate() {
    if (this.state === "closed" || this.rotating || !this.link?.opened) return;
    this.connect(true);
  }

  closed(link, event) {
    if (link.ended) return;
    link.ended = true;
    this.cancel(link.openTimer);
    this.cancel(link.pingTimer);
    this.cancel(link.rotateTimer);
    this.cancel(link.recoverTimer);
    for (const rec of link.channelRecoveries.values()) this.cancel(rec.timer);
    link.channelRecoveries.clear();
    if (link === this.rotating) {
      this.rotating = null;
      return;
    }
    if (link !== this.link) return;
    this.link = null;
    if (link.closedByUs || this.state === "closed") return;
    this.rejectPending("disconnected", "the connection closed before the reply");
    if (this.rotating?.opened) {
      // The old connection ended while its successor recovers: it takes over.
      this.link = this.rotating;
      this.rotating = null;
      return;
    }
    // A handshake that failed leaves the state at `connecting`: only a
    // connection that was up goes `disconnected`.
    if (link.opened) this.setState("disconnected", { code: event?.code, reason: event?.reason });
    this.retry();
  }

  retry() {
    if (this.state === "closed") return;
    const wait = backoffDelay(this.attempt++, this.ceiling(), this.random);
    this.later(wait, () => this.connect());
  }

  /**
   * The backoff's ceiling now. For the first `quickForMs` of a run of
   * failures it stays at `quickMaxMs`: a fleet that dropped at once meets
   * API Gateway's new-connection quota (429, which a browser cannot tell
   * from any other failed handshake), and a short ceiling lets the quota
   * be used as it refills instead of idling while clients sleep through
   * long waits. A run that lasts longer is an outage: the waits then grow
   * to `maxMs`.
   */
  ceiling() {
    const now = Date.now();
    if (this.attempt === 0 || this.failingSince === null) this.failingSince = now;
    const { baseMs, maxMs, quickMaxMs, quickForMs } = this.backoff;
    const quick = now - this.failingSince < quickForMs;
    return { baseMs, maxMs: quick ? Math.min(maxMs, quickMaxMs) : maxMs };
  }

  rejectPending(code, message) {
    for (const [id, { reject, timer }] of this.pending) {
      clearTimeout(timer);
      reject(new SwitchboardError(code, message));
      this.pending.delete(id);
    }
  }
}

export default Switchboard;
