// The batches view (a table filtered by state and destination, paged with the API's cursors) and one batch's
// detail (its files, manifest, attempts and last error in words), with retry and discard.

import {ApiError, get, post, segment} from "./api.js";
import {button, facts, h, replace, select} from "./dom.js";
import {bytes, count, plural, utc} from "./format.js";
import {listDestinations} from "./destinations.js";

const PAGE = 25;
const DETAIL_CALLS_AT_ONCE = 4;
const STATES = ["pending", "running", "landed", "failed"];

// The cursors of the pages before the one shown, for "Newer": the API's cursors only go forward.
const paging = {key: "", cursors: [], current: null};

function stateBadge(state) {
  const tone = {failed: "bad", landed: "good", running: "busy", pending: ""}[state] || "";
  return h("span", {class: ["badge", tone, `state-${state}`]}, state);
}

function errorWords(error) {
  return `Attempt ${error.attempt} failed on ${utc(error.at)}: ${error.message} (${error.code})`;
}

async function retry(batchId, ctx) {
  try {
    const state = await post(`batches/${segment(batchId)}/retry`);
    ctx.announce(`Batch ${batchId} is ${state.state} and due now: the export queue takes it within seconds ` +
      "(or press Run export now).");
    await ctx.reload();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    ctx.announce(`Batch ${batchId} was not retried: ${error.words}`, true);
  }
}

async function discard(batchId, ctx) {
  try {
    await post(`batches/${segment(batchId)}/discard`);
    ctx.announce(`Batch ${batchId} is discarded: it no longer waits for a retry or new credentials and no longer ` +
      "counts against its destination's health (Retry still exports it).");
    await ctx.reload();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    ctx.announce(`Batch ${batchId} was not discarded: ${error.words}`, true);
  }
}

/** Discard is offered for a failed batch not discarded yet, once the API has it (its status says discarded_at). */
function canDiscard(batch) {
  return batch.state === "failed" && "discarded_at" in batch && !batch.discarded_at;
}

function batchActions(batch, ctx) {
  const buttons = [];
  if (batch.state === "failed" || batch.state === "pending") {
    buttons.push(button("Retry", () => retry(batch.batch_id, ctx), {"aria-label": `Retry batch ${batch.batch_id}`}));
  }
  if (canDiscard(batch)) {
    buttons.push(button("Discard", () => discard(batch.batch_id, ctx),
      {class: "danger", "aria-label": `Discard batch ${batch.batch_id}`}));
  }
  return buttons;
}

function row(batch, ctx) {
  const reason = h("td", {class: "reason", "data-label": "Reason"});
  const actionCell = h("td", {"data-label": "Actions", class: "row-actions"}, batchActions(batch, ctx));
  const node = h("tr", {class: batch.state === "failed" ? "row-failed" : null, dataset: {batch: batch.batch_id}},
    h("td", {"data-label": "Batch"}, h("a", {href: `#batch/${segment(batch.batch_id)}`, class: "mono"}, batch.batch_id)),
    h("td", {"data-label": "State"}, stateBadge(batch.state)),
    h("td", {"data-label": "Type"}, batch.type),
    h("td", {"data-label": "Destination"}, batch.destination_id),
    h("td", {"data-label": "Created"}, utc(batch.created_at)),
    reason,
    actionCell);
  return {node, reason, actionCell};
}

function filters(query, destinations, ctx) {
  const stateChoice = select("state", [["", "Any state"], ...STATES.map((state) => [state, state])], query.state || "");
  const known = destinations.map((destination) => [destination.id, destination.id]);
  if (query.destination && !destinations.some((destination) => destination.id === query.destination)) {
    known.push([query.destination, query.destination]);
  }
  const destinationChoice = select("destination", [["", "Any destination"], ...known], query.destination || "");
  stateChoice.id = "filter-state";
  destinationChoice.id = "filter-destination";
  const form = h("form", {class: "filters", "aria-label": "Filter batches"},
    h("div", {class: "field"}, h("label", {for: "filter-state"}, "State"), stateChoice),
    h("div", {class: "field"}, h("label", {for: "filter-destination"}, "Destination"), destinationChoice),
    h("button", {type: "submit"}, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (stateChoice.value) params.set("state", stateChoice.value);
    if (destinationChoice.value) params.set("destination", destinationChoice.value);
    const text = params.toString();
    ctx.go(`#batches${text ? `?${text}` : ""}`);
  });
  return form;
}

async function eachAtMost(items, limit, work) {
  const queue = [...items];
  await Promise.all(Array.from({length: Math.min(limit, queue.length)}, async () => {
    while (queue.length) await work(queue.shift());
  }));
}

function emptyWords(query) {
  if (query.state || query.destination) return "No batch matches these filters.";
  return "No batch yet: once the platform posts a batch to a destination, it shows here.";
}

/** Render the batches list for `query` ({state, destination}); `move` is "older", "newer" or undefined. */
export async function renderBatches(root, ctx, query, move) {
  const key = `${query.state || ""}|${query.destination || ""}`;
  if (paging.key !== key || !move) Object.assign(paging, {key, cursors: [], current: null});
  if (move === "older" && paging.next) {
    paging.cursors.push(paging.current);
    paging.current = paging.next;
  } else if (move === "newer" && paging.cursors.length) {
    paging.current = paging.cursors.pop();
  }
  const [{destinations}, page] = await Promise.all([
    listDestinations(),
    get("batches", {state: query.state, destination_id: query.destination, limit: PAGE, next: paging.current}),
  ]);
  paging.next = page.next;
  const heading = h("h2", {tabindex: "-1"}, "Batches");
  const rows = page.batches.map((batch) => row(batch, ctx));
  const table = h("table", {class: "batches"},
    h("caption", {class: "visually-hidden"}, "Batches, newest first"),
    h("thead", {}, h("tr", {}, ["Batch", "State", "Type", "Destination", "Created", "Reason", "Actions"]
      .map((title) => h("th", {scope: "col"}, title)))),
    h("tbody", {}, rows.map((item) => item.node)));
  const pager = h("nav", {class: "pager", "aria-label": "Pages of batches"},
    button("Newer batches", () => renderBatches(root, ctx, query, "newer").then((node) => node.focus()),
      {disabled: paging.cursors.length === 0}),
    h("span", {class: "muted"}, `Page ${paging.cursors.length + 1} · ${plural(page.batches.length, "batch", "batches")}`),
    button("Older batches", () => renderBatches(root, ctx, query, "older").then((node) => node.focus()),
      {disabled: !page.next}));
  replace(root, heading, filters(query, destinations, ctx),
    page.batches.length ? [h("div", {class: "table-wrap"}, table), pager] : h("p", {class: "empty"}, emptyWords(query)));
  // A failed batch's reason is in its own status: read those of this page's failed batches.
  const failed = rows.filter((item, index) => page.batches[index].state === "failed")
    .map((item) => ({item, id: item.node.dataset.batch}));
  await eachAtMost(failed, DETAIL_CALLS_AT_ONCE, async ({item, id}) => {
    try {
      const status = await get(`batches/${segment(id)}`);
      item.reason.textContent = status.last_error ? status.last_error.message : "no error recorded";
      if (status.discarded_at) item.reason.append(h("span", {class: "badge"}, `discarded ${utc(status.discarded_at)}`));
      replace(item.actionCell, batchActions(status, ctx));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      item.reason.textContent = `(its status could not be read: ${error.words})`;
    }
  });
  return heading;
}

function filesTable(blobs) {
  if (!blobs.length) return h("p", {class: "muted"}, "No file yet: files are listed once the batch lands.");
  return h("div", {class: "table-wrap"}, h("table", {class: "files"},
    h("caption", {}, `${plural(blobs.length, "file")} written`),
    h("thead", {}, h("tr", {}, ["Name", "Partition", "Records", "Size", "MD5"].map((title) => h("th", {scope: "col"}, title)))),
    h("tbody", {}, blobs.map((blob) => h("tr", {},
      h("td", {"data-label": "Name", class: "mono"}, blob.name),
      h("td", {"data-label": "Partition"}, blob.partition),
      h("td", {"data-label": "Records", class: "num"}, count(blob.records)),
      h("td", {"data-label": "Size", class: "num"}, bytes(blob.bytes)),
      h("td", {"data-label": "MD5", class: "mono"}, blob.md5))))));
}

/** Render one batch's detail. */
export async function renderBatch(root, ctx, batchId) {
  const heading = h("h2", {tabindex: "-1"}, "Batch ", h("span", {class: "mono"}, batchId));
  let batch;
  try {
    batch = await get(`batches/${segment(batchId)}`);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    replace(root, heading, h("p", {class: "last-error"}, error.words),
      h("p", {}, h("a", {href: "#batches"}, "Back to batches")));
    return heading;
  }
  const error = batch.last_error;
  replace(root,
    h("div", {class: "view-head"}, heading, stateBadge(batch.state)),
    h("p", {}, h("a", {href: `#batches?destination=${segment(batch.destination_id)}`}, "Back to batches")),
    error ? h("div", {class: batch.state === "failed" ? "panel error-panel" : "panel warn-panel"},
      h("h3", {}, batch.state === "failed" ? "Why it failed" : "Last error (it will be retried)"),
      h("p", {}, errorWords(error))) : null,
    batch.discarded_at ? h("p", {class: "paused-reason"}, `Discarded on ${utc(batch.discarded_at)}: it no longer ` +
      "waits for a retry or new credentials. Retry still exports it.") : null,
    h("div", {class: "actions"}, batchActions(batch, ctx)),
    facts([
      ["Destination", h("a", {href: `#batches?destination=${segment(batch.destination_id)}`}, batch.destination_id)],
      ["Type", batch.type],
      ["Records", count(batch.records)],
      ["Staged size", bytes(batch.bytes)],
      ["Written", bytes(batch.output_bytes)],
      ["Attempts", `${count(batch.attempts)} since the last retry, ${count(batch.total_attempts)} in all`],
      ["Created", utc(batch.created_at)],
      ["Updated", utc(batch.updated_at)],
      ["Latest attempt started", batch.started_at ? utc(batch.started_at) : null],
      ["Finished", batch.finished_at ? utc(batch.finished_at) : null],
      ["Next attempt", batch.next_attempt_at ? utc(batch.next_attempt_at) : null],
      ["Coalesced run", batch.run_id],
      ["Manifest", batch.manifest ? h("span", {class: "mono"}, batch.manifest) : "none yet (written after its files)"],
    ]),
    h("h3", {}, "Files"),
    filesTable(batch.blobs),
    batch.notes.length ? [h("h3", {}, "Notes"), h("ul", {}, batch.notes.map((note) => h("li", {}, note)))] : null);
  return heading;
}
