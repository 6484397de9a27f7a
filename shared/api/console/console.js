// The console's entry: the views by the address's fragment (#destinations, #batches?state=failed&destination=x,
// #batch/<id>), the key prompt when the API answers 401, the top actions, and one live region for every result.

import {ApiError, KeyNeeded, forgetKey, post, saveKey, savedKey} from "./api.js";
import {renderBatch, renderBatches} from "./batches.js";
import {renderDestinations, tickCountdowns} from "./destinations.js";
import {h, replace} from "./dom.js";
import {plural} from "./format.js";

const view = document.getElementById("view");
const announcer = document.getElementById("announce");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");
const forgetButton = document.getElementById("forget-key");
const runButton = document.getElementById("run-now");
const refreshButton = document.getElementById("refresh");

let rendering = 0; // the latest render wins: an older one that finishes later is dropped

function decoded(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // a malformed escape: shown as it is
  }
}

/** Parse the fragment into a view and its query. */
export function route(hash) {
  const text = hash.replace(/^#/, "");
  if (text.startsWith("batch/")) return {name: "batch", id: decoded(text.slice("batch/".length))};
  const mark = text.indexOf("?");
  const name = mark < 0 ? text : text.slice(0, mark);
  const query = Object.fromEntries(new URLSearchParams(mark < 0 ? "" : text.slice(mark + 1)));
  if (name === "batches") return {name, query: {state: query.state || "", destination: query.destination || ""}};
  return {name: "destinations", query: {}};
}

function announce(message, isError = false) {
  announcer.classList.toggle("is-error", isError);
  // A change of text is what screen readers announce: clear first, so the same words twice are read twice.
  announcer.textContent = "";
  window.setTimeout(() => {
    announcer.textContent = message;
  }, 30);
}

function markCurrent(name) {
  for (const link of document.querySelectorAll(".views a")) {
    const current = link.getAttribute("href") === `#${name === "batch" ? "batches" : name}`;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function askForKey(refused) {
  view.replaceChildren();
  keyForm.hidden = false;
  keyError.textContent = refused ? "That key was refused: check it is the admin function's key." : "";
  keyInput.value = "";
  keyInput.focus();
}

async function render({focus} = {}) {
  const ticket = ++rendering;
  const where = route(window.location.hash);
  markCurrent(where.name);
  view.setAttribute("aria-busy", "true");
  try {
    let heading;
    if (where.name === "batch") heading = await renderBatch(view, ctx, where.id);
    else if (where.name === "batches") heading = await renderBatches(view, ctx, where.query);
    else heading = await renderDestinations(view, ctx);
    if (ticket !== rendering) return;
    keyForm.hidden = true;
    forgetButton.hidden = !savedKey();
    // To the new view's heading, unless the operator already went on into the view while it loaded.
    if (focus && heading && !view.contains(document.activeElement)) heading.focus();
  } catch (error) {
    if (ticket !== rendering) return;
    if (error instanceof KeyNeeded) {
      askForKey(error.refused);
    } else if (error instanceof ApiError) {
      replace(view, h("div", {class: "panel error-panel", role: "alert"},
        h("h2", {}, "The API answered an error"), h("p", {}, error.words)));
    } else {
      throw error;
    }
  } finally {
    view.removeAttribute("aria-busy");
  }
}

async function runNow() {
  announce("Running an export pass...");
  try {
    const summary = await post("exports/run");
    const parts = [plural(summary.landed, "batch", "batches") + " landed", `${summary.failed} failed`,
      `${summary.retried} to retry after a backoff`, `${summary.skipped} skipped`];
    announce(`Export pass done in ${summary.duration_seconds.toFixed(1)} s: ${parts.join(", ")}.`, summary.failed > 0);
    await render();
  } catch (error) {
    if (error instanceof KeyNeeded) askForKey(error.refused);
    else if (error instanceof ApiError) announce(`The export pass did not run: ${error.words}`, true);
    else throw error;
  }
}

async function withBusy(buttonNode, action) {
  if (buttonNode.disabled) return;
  buttonNode.disabled = true;
  buttonNode.setAttribute("aria-busy", "true");
  try {
    await action();
  } finally {
    buttonNode.disabled = false;
    buttonNode.removeAttribute("aria-busy");
  }
}

const ctx = {
  announce,
  go(hash) {
    if (window.location.hash === hash) render({focus: true});
    else window.location.hash = hash;
  },
  reload: () => render(),
};

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  saveKey(key);
  keyInput.value = "";
  render({focus: true});
});
forgetButton.addEventListener("click", () => {
  forgetKey();
  forgetButton.hidden = true;
  announce("The key is forgotten in this tab.");
  render({focus: true});
});
runButton.addEventListener("click", () => withBusy(runButton, runNow));
refreshButton.addEventListener("click", () => withBusy(refreshButton, async () => {
  await render();
  announce(`Refreshed at ${new Date().toISOString().slice(11, 19)} UTC.`);
}));
window.addEventListener("hashchange", () => render({focus: true}));
window.setInterval(() => tickCountdowns(view), 1000);

render();
