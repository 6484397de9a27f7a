// A destination's alerts (issue 17), from its status: what was raised in the last 7 days and whether each reached
// its webhooks; and how close it is to being paused automatically. Shown only when the status has them.

import {h} from "./dom.js";
import {plural, utc} from "./format.js";

const KIND_WORDS = {
  batch_failed: "A batch failed",
  paused: "Paused",
  sas_expiring: "SAS token expiring",
  sas_expired: "SAS token expired",
  recovered: "Recovered",
};

const TARGET_WORDS = {app: "the app's webhook", destination: "its own webhook"};

function deliveryWords(target, delivery) {
  const where = `${TARGET_WORDS[target] || target}${delivery.origin ? ` (${delivery.origin})` : ""}`;
  if (delivery.state === "delivered") return `${where}: delivered ${utc(delivery.delivered_at)}`;
  const answer = delivery.status_code ? `, HTTP ${delivery.status_code}` : "";
  const why = delivery.last_error ? `: ${delivery.last_error}` : "";
  if (delivery.state === "pending") {
    return `${where}: ${plural(delivery.attempts, "attempt")} so far${answer}${why}; next ${utc(delivery.next_attempt_at)}`;
  }
  return `${where}: gave up after ${plural(delivery.attempts, "attempt")}${answer}${why}`;
}

function alertItem(alert) {
  const deliveries = Object.entries(alert.deliveries || {});
  const state = alert.state === "no_target" ? "not sent: no webhook was set (ALERT_WEBHOOK_URL or alerts.webhook_url)"
    : alert.state;
  return h("li", {class: `alert alert-${alert.state}`},
    h("strong", {}, KIND_WORDS[alert.kind] || alert.kind), ` · ${utc(alert.occurred_at)} · ${state}`,
    deliveries.length ? h("ul", {}, deliveries.map(([target, delivery]) => h("li", {}, deliveryWords(target, delivery))))
      : null);
}

/** The alerts and the auto-pause count, or nothing when the status does not carry them. */
export function alertsPart(status) {
  const parts = [];
  const runs = status.consecutive_failed_runs;
  if (typeof runs === "number" && runs > 0) {
    const limit = status.auto_pause_after;
    parts.push(h("p", {class: "failed-runs"}, `${plural(runs, "export run")} failed in a row` +
      (limit ? `; it is paused automatically after ${limit}` : "")));
  }
  if (Array.isArray(status.alerts) && status.alerts.length) {
    const undelivered = status.alerts.filter((alert) => alert.state !== "delivered").length;
    parts.push(h("details", {class: "alerts"},
      h("summary", {}, `Alerts: ${plural(status.alerts.length, "alert")} in the last 7 days` +
        (undelivered ? ` (${undelivered} not delivered)` : "")),
      h("ul", {}, status.alerts.map(alertItem))));
  }
  return parts;
}
