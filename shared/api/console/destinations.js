// The destinations view: one card a destination with its settings, health (the status endpoint), SAS expiry as a
// countdown, the landings chart and its actions.

import {alertsPart} from "./alerts.js";
import {ApiError, get, post, segment} from "./api.js";
import {landedChart} from "./chart.js";
import {button, facts, field, h, replace} from "./dom.js";
import {ago, count, duration, expiryState, plural, utc} from "./format.js";
import {setupPanel} from "./setup.js";

const PAGE = 100;
const MAX_PAGES = 20; // 2,000 destinations; past that the view says so
const STATUS_CALLS_AT_ONCE = 4;

const AUTH_WORDS = {
  sas: "SAS token",
  service_principal: "Service principal",
  managed_identity: "Managed identity",
  connection_string: "Connection string",
};

/** Every destination, page by page (the view lists them all; MAX_PAGES bounds a runaway). */
export async function listDestinations() {
  const found = [];
  let next = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const answer = await get("destinations", {limit: PAGE, next});
    found.push(...answer.destinations);
    next = answer.next;
    if (!next) return {destinations: found, more: false};
  }
  return {destinations: found, more: true};
}

/** Whether the destination is paused and why; null when the API does not say (no pause feature). */
export function pausedFacts(destination) {
  if (!("paused" in destination)) return null;
  const paused = destination.paused;
  if (!paused) return {paused: false};
  const who = paused.by === "auto"
    ? `automatically after ${plural(paused.failed_runs || 0, "failed export run")}` : "by an operator";
  return {paused: true, words: `Paused ${who} ${ago(paused.at)}: ${paused.reason}`};
}

function authText(auth) {
  const words = AUTH_WORDS[auth.type] || auth.type;
  if (auth.type === "sas" && auth.sas) return `${words} (${auth.sas.permission_names.join(", ")})`;
  if (auth.type === "service_principal") return `${words} ${auth.client_id} in tenant ${auth.tenant_id}`;
  if (auth.type === "managed_identity") return auth.client_id ? `${words} ${auth.client_id}` : `${words} (the app's)`;
  return words;
}

function whereText(destination) {
  const account = destination.account_name || destination.endpoint || "the connection string's account";
  return `${account} / ${destination.container}${destination.prefix ? ` / ${destination.prefix}` : ""}`;
}

function formatText(destination) {
  const parts = [destination.format, destination.compression, `${destination.layout} layout`,
    destination.partition === "day" ? "daily partitions" : "hourly partitions"];
  if (destination.coalesce) parts.push(`coalesced (waits up to ${duration(destination.coalesce.max_delay_seconds)})`);
  if (destination.access_tier) parts.push(`${destination.access_tier} tier`);
  return parts.join(" · ");
}

/** The SAS countdown: its text and level are refreshed every second by tickCountdowns. */
function sasCountdown(sas) {
  const node = h("span", {class: "countdown", dataset: {expiry: sas.expiry || ""}});
  paintCountdown(node);
  return node;
}

function paintCountdown(node) {
  const {level, text} = expiryState(node.dataset.expiry || null);
  node.className = `countdown level-${level}`;
  if (node.textContent !== text) node.textContent = text;
}

export function tickCountdowns(root) {
  for (const node of root.querySelectorAll(".countdown")) paintCountdown(node);
}

function countsLine(destination, counts) {
  const failed = counts.failed > 0
    ? h("a", {href: `#batches?state=failed&destination=${segment(destination.id)}`, class: "bad"},
      `${count(counts.failed)} failed`)
    : "0 failed";
  return h("span", {class: "counts"},
    `${count(counts.pending)} pending (${count(counts.retrying)} retrying) · ${count(counts.running)} running · `,
    failed, ` · ${count(counts.landed_last_24h)} landed in 24 h`);
}

function healthBadge(status) {
  if (!status) return h("span", {class: "badge"}, "Health unknown");
  return status.up_to_date
    ? h("span", {class: "badge good"}, "Up to date")
    : h("span", {class: "badge bad"}, "Not up to date");
}

function healthPart(destination, status, ctx) {
  const last = status.last_landed;
  const oldest = status.oldest_pending;
  const error = status.last_error;
  return [
    facts([
      ["Last landed", last ? `${ago(last.at)} (${plural(last.records, "record")}, batch ${last.batch_id})`
        : "nothing yet"],
      ["Oldest waiting", oldest ? `${duration(oldest.age_seconds)} (${oldest.state}, batch ${oldest.batch_id})`
        : "nothing waiting"],
      ["Batches", countsLine(destination, status.counts)],
    ]),
    status.reasons.length ? h("ul", {class: "reasons"}, status.reasons.map((reason) => h("li", {}, reason))) : null,
    error ? h("p", {class: error.will_retry ? "last-error retrying" : "last-error"},
      h("strong", {}, "Last error: "), error.message, " ",
      h("span", {class: "muted"}, `(${error.code}, attempt ${error.attempt}, ${utc(error.at)}, batch `),
      h("a", {href: `#batch/${segment(error.batch_id)}`}, error.batch_id),
      h("span", {class: "muted"}, error.will_retry ? "; it will be retried by itself)" : ")")) : null,
    alertsPart(status),
    landedChart(status.landed_by_hour, `Records landed per hour, ${destination.id}`),
  ];
}

async function testDestination(destination, ctx) {
  try {
    const result = await post(`destinations/${segment(destination.id)}/test`);
    const deleted = result.checks.delete ? "and deleted" : "(it could not be deleted: grant delete permission)";
    const warnings = result.warnings.length ? ` Warnings: ${result.warnings.join("; ")}` : "";
    ctx.announce(`Destination ${destination.id} passed the test: a probe blob ${result.probe_blob} was written, ` +
      `read back ${deleted}.${warnings}`);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    ctx.announce(`Destination ${destination.id} failed the test: ${error.words}`, true);
  }
}

async function pauseOrResume(destination, pause, reason, ctx) {
  const action = pause ? "pause" : "resume";
  try {
    await post(`destinations/${segment(destination.id)}/${action}`, pause && reason ? {reason} : undefined);
    ctx.announce(pause ? `Destination ${destination.id} is paused: exports skip it; intake still accepts its batches.`
      : `Destination ${destination.id} is resumed: its waiting batches are sent for export.`);
    await ctx.reload();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    ctx.announce(`Destination ${destination.id} was not ${pause ? "paused" : "resumed"}: ${error.words}`, true);
  }
}

/** Pause asks for an optional reason first (a small form in the card); resume acts at once. */
function pauseControl(destination, pause, ctx) {
  if (pause.paused) {
    return button("Resume", () => pauseOrResume(destination, false, "", ctx),
      {"aria-label": `Resume destination ${destination.id}`});
  }
  const reason = h("input", {name: "reason", maxlength: "500", autocomplete: "off"});
  const [reasonField] = field("Reason (optional)", reason, "Shown with the destination and in its status.");
  const form = h("form", {class: "pause-form", hidden: true, "aria-label": `Pause destination ${destination.id}`},
    reasonField,
    h("div", {class: "actions"},
      h("button", {type: "submit", class: "danger"}, "Pause exports"),
      button("Cancel", () => {
        form.hidden = true;
        open.focus();
      })));
  const open = button("Pause", () => {
    form.hidden = false;
    reason.focus();
  }, {"aria-label": `Pause destination ${destination.id}`});
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await pauseOrResume(destination, true, reason.value.trim(), ctx);
  });
  return [open, form];
}

function actions(destination, ctx) {
  const pause = pausedFacts(destination);
  return h("div", {class: "actions"},
    button("Test destination", () => testDestination(destination, ctx), {"aria-label": `Test destination ${destination.id}`}),
    pause ? pauseControl(destination, pause, ctx) : null,
    h("a", {href: `#batches?destination=${segment(destination.id)}`, class: "button-link"}, "Show batches"));
}

/** A destination's card, shown at once; `showStatus` fills in its health when the status call answers. Only the
 * health part changes then, so a control the operator already reached (an open pause form) stays as it is. */
function card(destination, ctx) {
  const headingId = `dest-${segment(destination.id)}`;
  const pause = pausedFacts(destination);
  const sas = destination.auth.type === "sas" && destination.auth.sas ? destination.auth.sas : null;
  const badge = h("span", {class: "badge"}, "Health loading");
  const health = h("div", {class: "health", "aria-busy": "true"});
  const node = h("article", {class: "card", "aria-labelledby": headingId, dataset: {destination: destination.id}},
    h("header", {class: "card-head"},
      h("h3", {id: headingId}, destination.id),
      badge,
      pause && pause.paused ? h("span", {class: "badge bad"}, "Paused") : null),
    pause && pause.paused ? h("p", {class: "paused-reason"}, `${pause.words}. Intake still accepts its batches; ` +
      "exports skip it until it is resumed or its credentials are updated.") : null,
    facts([
      ["Where", whereText(destination)],
      ["Auth", authText(destination.auth)],
      ["SAS expiry", sas ? sasCountdown(sas) : null],
      ["Format", formatText(destination)],
      ["Alerts to", destination.alerts ? `its own webhook at ${destination.alerts.webhook_origin}, and the app's if set`
        : null],
    ]),
    destination.warnings.length
      ? h("ul", {class: "warnings"}, destination.warnings.map((warning) => h("li", {}, warning))) : null,
    health,
    actions(destination, ctx));
  function showStatus(status, statusError) {
    badge.replaceWith(healthBadge(status));
    node.classList.toggle("attention", Boolean(status && !status.up_to_date));
    replace(health, status ? healthPart(destination, status, ctx) : null,
      statusError ? h("p", {class: "last-error"}, `Its status could not be read: ${statusError.words}`) : null);
    health.removeAttribute("aria-busy");
  }
  return {node, showStatus};
}

async function eachAtMost(items, limit, work) {
  const queue = [...items];
  const workers = Array.from({length: Math.min(limit, queue.length)}, async () => {
    while (queue.length) await work(queue.shift());
  });
  await Promise.all(workers);
}

/** One line at the top: how many destinations, and how many need attention (health at a glance). */
function summaryLine(destinations, more, statuses) {
  const parts = [plural(destinations.length, "destination")];
  if (more) parts[0] += ` shown (the first ${count(destinations.length)}; there are more)`;
  const failing = destinations.filter((destination) => statuses.get(destination.id)?.up_to_date === false);
  const paused = destinations.filter((destination) => pausedFacts(destination)?.paused);
  const expiring = destinations.filter((destination) => destination.auth.sas &&
    expiryState(destination.auth.sas.expiry).level !== "ok");
  for (const [found, words] of [[failing, "not up to date"], [paused, "paused"], [expiring, "SAS expiring or expired"]]) {
    if (found.length) parts.push(`${count(found.length)} ${words}: ${found.map((d) => d.id).join(", ")}`);
  }
  const attention = failing.length || paused.length || expiring.length;
  return h("p", {class: attention ? "summary attention-text" : "summary muted"}, parts.join(" · "));
}

/** Render the destinations view into `root`. */
export async function renderDestinations(root, ctx) {
  const {destinations, more} = await listDestinations();
  const heading = h("h2", {tabindex: "-1"}, "Destinations");
  if (!destinations.length) {
    replace(root, heading, setupPanel(ctx, {first: true}));
    return heading;
  }
  const list = h("div", {class: "cards"});
  const cards = new Map();
  for (const destination of destinations) {
    const made = card(destination, ctx);
    cards.set(destination.id, made);
    list.append(made.node);
  }
  const statuses = new Map();
  const head = h("div", {class: "view-head"}, heading, summaryLine(destinations, more, statuses));
  replace(root, head, list, setupPanel(ctx, {first: false}));
  await eachAtMost(destinations, STATUS_CALLS_AT_ONCE, async (destination) => {
    try {
      const status = await get(`destinations/${segment(destination.id)}/status`);
      statuses.set(destination.id, status);
      cards.get(destination.id).showStatus(status, null);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      cards.get(destination.id).showStatus(null, error);
    }
  });
  head.lastChild.replaceWith(summaryLine(destinations, more, statuses));
  return heading;
}
