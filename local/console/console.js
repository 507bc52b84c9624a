// Switchboard console: the JavaScript client (./switchboard.js) and the HTTP
// API, nothing else. Every value that came from the server or another user
// is put in the page as text (textContent), never as markup.
import { Switchboard, topicMatches } from "./switchboard.js";

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "switchboard.console.token";
/** Rows kept in the feed (older ones leave the page; the history keeps them). */
const MAX_ROWS = 1000;
/** Seconds the charts show. */
const WINDOW_SECS = 120;

const params = new URLSearchParams(location.search);
let config = { ws_url: "", api_url: "", mint: false };
/** The event catalogue, from the HTTP API's OpenAPI document. */
let eventTypes = [];
let session = null;

/** 18:04:05.123 */
function clock(ms, millis = true) {
  const t = new Date(ms);
  const hms = t.toLocaleTimeString([], { hour12: false });
  return millis ? `${hms}.${String(t.getMilliseconds()).padStart(3, "0")}` : hms;
}

/** Element helper: el("td", {class: "x"}, "text", child). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function status(message, bad = false) {
  const footer = $("#status");
  footer.textContent = message;
  footer.classList.toggle("bad", bad);
}

/** The claims of a JWT, for display only (the server verifies it). */
function claimsOf(token) {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("a token is three base64url parts separated by dots");
  let claims;
  try {
    claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    throw new Error("the token's payload is not base64url JSON");
  }
  for (const claim of ["sub", "tenant_id", "role"]) {
    if (typeof claims[claim] !== "string") throw new Error(`the token has no ${claim} claim`);
  }
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
    throw new Error(`the token expired at ${new Date(claims.exp * 1000).toLocaleString()}`);
  }
  return claims;
}

/** The HTTP API with the session's token; throws Error(message) with the API's code. */
async function api(path, options = {}) {
  const response = await fetch(`${config.api_url}${path}`, {
    ...options,
    headers: { authorization: `Bearer ${session.token}`, "content-type": "application/json", ...(options.headers ?? {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(`${body.code ?? response.status}: ${body.message ?? response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// ------------------------------------------------------------------ sign in

function showSignIn(message = "") {
  $("#signin").hidden = false;
  $("#app").hidden = true;
  $("#who").hidden = true;
  $("#sign-out").hidden = true;
  $("#mint-form").hidden = !config.mint;
  $("#signin-error").textContent = message;
}

async function signIn(token) {
  let claims;
  try {
    claims = claimsOf(token.trim());
  } catch (error) {
    showSignIn(error.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  start(token.trim(), claims);
}

$("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn(new FormData(e.target).get("token") ?? "");
});

$("#mint-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = Object.fromEntries(new FormData(e.target));
  const response = await fetch("token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(form),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    showSignIn(body.message ?? `minting failed (${response.status})`);
    return;
  }
  signIn(body.token);
});

$("#sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  session?.sb.close();
  session = null;
  showSignIn();
  status("signed out");
});

// ------------------------------------------------------------------ session

function start(token, claims) {
  session?.sb.close();
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#who").hidden = false;
  $("#sign-out").hidden = false;
  $("#who-tenant").textContent = `tenant ${claims.tenant_id}`;
  $("#who-user").textContent = `user ${claims.sub}`;
  $("#who-role").textContent = claims.role;
  const sb = new Switchboard({
    url: params.get("ws") ?? config.ws_url,
    token: () => session.token,
    backoff: { baseMs: 250, maxMs: 5_000 },
  });
  session = { token, claims, sb, events: [], selected: null, online: new Map(), buckets: new Map(), channels: new Map() };
  for (const name of ["connecting", "connected", "disconnected", "closed"]) {
    sb.on(name, () => showState(name));
  }
  sb.on("recovered", ({ count, missed }) => {
    note(`reconnected: ${missed} missed event(s) recovered (${count} replayed)`);
    refreshPresence();
  });
  sb.on("gap", () => {
    note("reconnected after a gap the history no longer covers: events may be missing; presence reloaded");
    refreshPresence();
  });
  sb.on("error", (error) => status(`${error.code ?? "error"}: ${error.message}`, true));
  sb.subscribe(["*"], received);
  renderChannels();
  refreshPresence();
  refreshWebhooks();
  fillPublishForm();
  renderFeed();
}

function showState(name) {
  const badge = $("#state");
  badge.dataset.state = name;
  badge.textContent = { connecting: "connecting…", connected: "connected", disconnected: "reconnecting…", closed: "closed" }[name];
  if (name === "connected") status(`subscribed to every event of tenant ${session.claims.tenant_id} at ${session.sb.url}`);
}

/** A line in the feed that is not an event (a reconnect, a gap). */
function note(text) {
  session.events.push({ note: text, at: Date.now() });
  trim();
  renderFeed();
}

function trim() {
  if (session.events.length > MAX_ROWS) session.events.splice(0, session.events.length - MAX_ROWS);
}

// ------------------------------------------------------------------ events

function received(event) {
  session.events.push(event);
  trim();
  count(event);
  if (event.type === "presence.online" || event.type === "presence.offline") presenceEvent(event);
  // The tenant's position; a channel's offsets are its own.
  if (typeof event.offset === "number" && !event.channel) $("#position").textContent = `${event.epoch}:${event.offset}`;
  if (matchesFilter(event)) prependRow(event);
  $("#feed-count").textContent = String(session.events.filter((e) => !e.note).length);
}

function filters() {
  return $("#filter").value.split(",").map((t) => t.trim()).filter(Boolean);
}

function matchesFilter(event) {
  const topics = filters();
  return event.note !== undefined || topics.length === 0 || topics.some((t) => topicMatches(t, event.type));
}

function row(event) {
  if (event.note !== undefined) {
    return el("tr", { class: "note" }, el("td", { colSpan: 6 }, `${clock(event.at)} — ${event.note}`));
  }
  const tr = el(
    "tr",
    { "data-id": event.id, "data-offset": event.offset ?? "", "data-channel": event.channel ?? "" },
    el("td", {}, clock(event.timestamp)),
    el("td", { class: "mono" }, event.channel ?? "tenant"),
    el("td", {}, event.offset ?? "–"),
    el("td", { class: "type", "data-family": event.type.split(".")[0] }, event.type),
    el("td", {}, event.sender ? `${event.sender.user_id}` : "server"),
    el("td", { title: JSON.stringify(event.data) }, JSON.stringify(event.data)),
  );
  if (session.selected === event.id) tr.classList.add("selected");
  tr.addEventListener("click", () => select(event));
  return tr;
}

function prependRow(event) {
  const body = $("#feed tbody");
  body.prepend(row(event));
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}

function renderFeed() {
  const body = $("#feed tbody");
  body.replaceChildren(...session.events.filter(matchesFilter).reverse().map(row));
  $("#feed-count").textContent = String(session.events.filter((e) => !e.note).length);
}

$("#filter").addEventListener("input", () => session && renderFeed());
$("#clear").addEventListener("click", () => {
  session.events = [];
  renderFeed();
});

function select(event) {
  session.selected = event.id;
  for (const tr of document.querySelectorAll("#feed tbody tr.selected")) tr.classList.remove("selected");
  document.querySelector(`#feed tbody tr[data-id="${CSS.escape(event.id)}"]`)?.classList.add("selected");
  const fields = [
    ["type", event.type],
    ["channel", event.channel ?? "– (the tenant, a user or a connection)"],
    ["id", event.id],
    ["offset", event.offset ?? "–"],
    ["epoch", event.epoch ?? "–"],
    ["sender", event.sender ? `${event.sender.user_id} (${event.sender.role})` : "the server / a back-end invocation"],
    ["target", event.target ? JSON.stringify(event.target) : "– (not in the envelope)"],
    ["time", new Date(event.timestamp).toISOString()],
  ];
  $("#detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { title: String(v) }, v)]));
  $("#detail").textContent = JSON.stringify(event, null, 2);
}

// ------------------------------------------------------------------ presence

async function refreshPresence() {
  if (!session) return;
  try {
    const [presence, stats] = await Promise.all([api("/v1/presence"), api("/v1/stats")]);
    session.online = new Map(presence.online_users.map((u) => [u, session.online.get(u) ?? null]));
    $("#conn-count").textContent = String(stats.tenant_connections ?? "–");
    renderPresence();
    // Connections per user, for a list of a reasonable size.
    for (const user of [...session.online.keys()].slice(0, 50)) refreshUser(user);
  } catch (error) {
    status(`presence: ${error.message}`, true);
  }
}

async function refreshUser(user) {
  try {
    const answer = await api(`/v1/users/${encodeURIComponent(user)}/online`);
    if (answer.is_online) session.online.set(user, answer.connection_count);
    else session.online.delete(user);
    renderPresence();
  } catch {
    // The list still shows the user; the count stays unknown.
  }
}

let statsTimer = null;
function presenceEvent(event) {
  const user = event.data?.user_id;
  if (typeof user !== "string") return;
  if (event.type === "presence.online") session.online.set(user, session.online.get(user) ?? null);
  else session.online.delete(user);
  renderPresence();
  refreshUser(user);
  clearTimeout(statsTimer);
  statsTimer = setTimeout(async () => {
    try {
      $("#conn-count").textContent = String((await api("/v1/stats")).tenant_connections ?? "–");
    } catch {
      // Shown as it was.
    }
  }, 300);
}

function renderPresence() {
  const users = [...session.online.entries()].sort(([a], [b]) => a.localeCompare(b));
  $("#online-count").textContent = String(users.length);
  $("#online").replaceChildren(
    ...users.map(([user, n]) =>
      el("li", { "data-user": user }, el("span", {}, el("span", { class: "dot" }), user), el("span", { class: "n" }, n === null ? "" : `${n} conn`)),
    ),
  );
}

// ------------------------------------------------------------------ webhooks

async function refreshWebhooks() {
  if (!session) return;
  const box = $("#webhooks");
  if (session.claims.role !== "admin") {
    $("#webhooks-note").textContent = "Webhooks are managed with an admin token.";
    box.replaceChildren();
    return;
  }
  try {
    const { webhooks } = await api("/v1/webhooks");
    $("#webhooks-note").textContent = webhooks.length === 0 ? "No webhooks in this tenant (POST /v1/webhooks)." : "";
    const cards = await Promise.all(webhooks.map(async (hook) => {
      let deliveries = [];
      try {
        deliveries = (await api(`/v1/webhooks/${encodeURIComponent(hook.id)}/deliveries?limit=5`)).deliveries;
      } catch {
        // The card shows the webhook without them.
      }
      return el(
        "div",
        { class: "hook", "data-webhook": hook.id },
        el("div", { class: "url" }, hook.url),
        el("div", { class: "meta" }, `${hook.name || hook.id} · ${hook.is_active ? "active" : `disabled${hook.disabled_reason ? `: ${hook.disabled_reason}` : ""}`} · ${hook.events.join(", ")}`),
        el("table", {}, el("tbody", {}, ...deliveries.map((d) => el(
          "tr",
          {
            "data-status": d.status,
            title: `${d.event}${d.error ? `: ${d.error}` : ""}${d.next_attempt_at ? `; next attempt ${clock(d.next_attempt_at, false)}` : ""}`,
          },
          el("td", {}, clock(d.created_at, false)),
          el("td", { class: `status-${d.status}` }, d.next_attempt_at ? `${d.status}, retry ${clock(d.next_attempt_at, false)}` : d.status),
          el("td", {}, d.response_code ?? (d.error ? "error" : "–")),
          el("td", {}, `#${d.attempt}`),
        )))),
      );
    }));
    box.replaceChildren(...cards);
  } catch (error) {
    $("#webhooks-note").textContent = `webhooks: ${error.message}`;
  }
}

$("#webhooks-refresh").addEventListener("click", refreshWebhooks);
setInterval(() => session && !document.hidden && refreshWebhooks(), 5_000);

// ------------------------------------------------------------------ channels

/** Joins a channel: its events go to the feed, recovered after every reconnect. */
function join(name, filter) {
  const topics = filter.length > 0 ? filter : ["*"];
  let channel;
  try {
    channel = session.sb.channel(name);
  } catch (error) {
    $("#channel-error").textContent = error.message;
    return;
  }
  $("#channel-error").textContent = "";
  session.channels.get(name)?.offs.forEach((off) => off());
  const entry = { channel, topics, offs: [] };
  session.channels.set(name, entry);
  for (const topic of topics) entry.offs.push(channel.on(topic, received));
  entry.offs.push(channel.on("error", (error) => {
    $("#channel-error").textContent = error.message;
    if (["forbidden", "invalid_channel", "channel_full", "too_many_subscriptions", "unknown_event_type"].includes(error.code)) {
      session.channels.delete(name);
      renderChannels();
    }
  }));
  entry.offs.push(channel.on("gap", () => note(`${name}: a gap its history no longer covers; events may be missing`)));
  entry.offs.push(channel.on("recovered", ({ missed }) => note(`${name}: ${missed} missed event(s) recovered`)));
  renderChannels();
}

function leave(name) {
  session.channels.get(name)?.channel.leave();
  session.channels.delete(name);
  renderChannels();
}

function renderChannels() {
  const items = [...session.channels.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, { topics }]) =>
    el("li", { "data-channel": name },
      el("span", { class: "mono" }, name),
      el("span", { class: "sub" }, ` ${topics.join(", ")} `),
      (() => {
        const b = el("button", { type: "button", class: "small" }, "leave");
        b.addEventListener("click", () => leave(name));
        return b;
      })(),
    ),
  );
  $("#channels").replaceChildren(...items);
  $("#channel-count").textContent = String(items.length);
}

$("#channel-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!session) return;
  const name = $("#channel-name").value.trim();
  const filter = $("#channel-filter").value.split(",").map((t) => t.trim()).filter(Boolean);
  join(name, filter);
});

// ------------------------------------------------------------------ publish

async function fillPublishForm() {
  const select = $("#publish-type");
  if (eventTypes.length === 0) {
    try {
      const document = await (await fetch(`${config.api_url}/v1/openapi.json`)).json();
      eventTypes = document.components.schemas.PublishRequest.properties.type.enum;
    } catch (error) {
      status(`the event catalogue (/v1/openapi.json): ${error.message}`, true);
      return;
    }
    select.replaceChildren(...eventTypes.map((t) => el("option", { value: t }, t)));
    select.value = eventTypes.includes("chat.message") ? "chat.message" : eventTypes[0];
  }
}

$("#publish-target").addEventListener("change", (e) => {
  const to = $("#publish-to");
  to.disabled = e.target.value === "tenant";
  to.required = !to.disabled;
});

function parseData() {
  const area = $("#publish-data");
  const text = area.value.trim();
  try {
    const data = text === "" ? {} : JSON.parse(text);
    area.classList.remove("invalid");
    $("#publish-data-error").textContent = "";
    $("#publish-send").disabled = false;
    return { ok: true, data };
  } catch (error) {
    area.classList.add("invalid");
    $("#publish-data-error").textContent = `not JSON: ${error.message}`;
    $("#publish-send").disabled = true;
    return { ok: false };
  }
}

$("#publish-data").addEventListener("input", parseData);

$("#publish-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const parsed = parseData();
  if (!parsed.ok || !session) return;
  const kind = $("#publish-target").value;
  const to = $("#publish-to").value.trim();
  const result = $("#publish-result");
  if (kind !== "tenant" && to === "") {
    result.className = "result bad";
    result.textContent = `name the ${kind}`;
    return;
  }
  const target = kind === "tenant" ? { tenant: true } : { [kind]: to };
  result.className = "result";
  result.textContent = "publishing…";
  try {
    const reply = await session.sb.publish($("#publish-type").value, target, parsed.data);
    const r = reply.report ?? {};
    result.className = "result ok";
    result.textContent = `published: ${r.delivered ?? 0} delivered${r.queued_offline ? `, ${r.queued_offline} queued offline` : ""}${r.webhooks_enqueued ? `, ${r.webhooks_enqueued} webhook(s)` : ""}`;
  } catch (error) {
    result.className = "result bad";
    result.textContent = `${error.code}: ${error.message}`;
  }
});

// ------------------------------------------------------------------ charts

function count(event) {
  const second = Math.floor(Date.now() / 1000);
  const bucket = session.buckets.get(second) ?? { n: 0, latencies: [] };
  bucket.n += 1;
  if (typeof event.timestamp === "number") bucket.latencies.push(Math.max(0, Date.now() - event.timestamp));
  session.buckets.set(second, bucket);
}

/** Bars of `values` (null: no bar) into an SVG 240 wide, 40 high. */
function bars(svg, values) {
  const w = 240 / values.length;
  const top = Math.max(1, ...values.filter((v) => v !== null));
  svg.replaceChildren(...values.flatMap((v, i) => {
    if (!v) return [];
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = Math.max((v / top) * 38, 1);
    bar.setAttribute("x", String(i * w));
    bar.setAttribute("y", String(40 - h));
    bar.setAttribute("width", String(Math.max(w - 0.4, 0.5)));
    bar.setAttribute("height", String(h));
    return [bar];
  }));
  return top;
}

function drawCharts() {
  if (!session) return;
  const now = Math.floor(Date.now() / 1000);
  for (const s of session.buckets.keys()) if (s <= now - WINDOW_SECS) session.buckets.delete(s);
  const seconds = Array.from({ length: WINDOW_SECS }, (_, i) => now - WINDOW_SECS + 1 + i);
  const rates = seconds.map((s) => session.buckets.get(s)?.n ?? 0);
  const medians = seconds.map((s) => {
    const l = session.buckets.get(s)?.latencies;
    if (!l || l.length === 0) return null;
    const sorted = [...l].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  });
  const peak = bars($("#rate-chart"), rates);
  const worst = bars($("#latency-chart"), medians);
  const known = medians.filter((m) => m !== null);
  $("#rate-now").textContent = `now ${rates.at(-2) ?? 0} · peak ${peak}`;
  $("#latency-now").textContent = known.length ? `median ${known.at(-1)} · peak ${worst}` : "–";
}
setInterval(drawCharts, 1_000);

// ------------------------------------------------------------------ boot

async function boot() {
  try {
    const response = await fetch("config.json");
    if (response.ok) config = { ...config, ...(await response.json()) };
  } catch {
    // Static files without a config.json: the ws parameter must say where.
  }
  if (!config.ws_url && !params.get("ws")) status("no gateway URL: add ?ws=wss://… or a config.json beside the page", true);
  const fromUrl = params.get("token");
  if (fromUrl) {
    // Keep the token out of the address bar, the history and bookmarks.
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}${params.size ? `?${params}` : ""}`);
  }
  const token = fromUrl ?? sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
  else showSignIn();
}

boot();
