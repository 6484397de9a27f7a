// Adding a destination: what a new operator sees first (no destination yet), and below the cards afterwards.
// A form for the common cases (a SAS token, or the app's managed identity), and the same call as curl.

import {ApiError, put, segment} from "./api.js";
import {button, field, h, select} from "./dom.js";

function curlExample() {
  const api = new URL(".", document.baseURI).href.replace(/\/$/, "");
  return [
    `curl -X PUT "${api}/destinations/acme" \\`,
    `  -H "x-functions-key: $ADMIN_KEY" -H "Content-Type: application/json" \\`,
    `  -d '{"account_name": "acmeexports", "container": "analytics",`,
    `       "format": "jsonl", "compression": "gzip",`,
    `       "auth": {"type": "sas", "sas_token": "sv=...&sp=rwdl&se=...&sig=..."}}'`,
  ].join("\n");
}

function body(form) {
  const data = new FormData(form);
  const where = String(data.get("where")).trim();
  const destination = {
    container: String(data.get("container")).trim(),
    format: String(data.get("format")),
    auth: data.get("auth") === "sas"
      ? {type: "sas", sas_token: String(data.get("sas_token")).trim().replace(/^\?/, "")}
      : {type: "managed_identity"},
  };
  if (/^https?:\/\//i.test(where)) destination.endpoint = where;
  else destination.account_name = where;
  const prefix = String(data.get("prefix")).trim();
  if (prefix) destination.prefix = prefix;
  return destination;
}

async function create(form, ctx, result) {
  const id = String(new FormData(form).get("id")).trim();
  const verify = form.elements.namedItem("verify").checked;
  result.textContent = "";
  try {
    const created = await put(`destinations/${segment(id)}`, body(form), verify ? {} : {verify: "false"});
    form.reset();
    ctx.announce(`Destination ${created.id} saved${verify ? ": its credentials were proven by a probe blob" : ""}. ` +
      "Next: the platform posts batches to it with the intake key.");
    await ctx.reload();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    result.textContent = `Not saved: ${error.words}`;
    ctx.announce(`Destination ${id} was not saved: ${error.words}`, true);
  }
}

function destinationForm(ctx) {
  const result = h("p", {class: "error-text", role: "alert"});
  const sasToken = h("input", {name: "sas_token", type: "password", autocomplete: "off", spellcheck: "false"});
  const authChoice = select("auth", [["sas", "SAS token"], ["managed_identity", "The app's managed identity"]], "sas");
  const [sasField] = field("SAS token", sasToken, "Container SAS with read and write (and delete); stored in the " +
    "app's secret store, never shown again.");
  authChoice.addEventListener("change", () => {
    sasField.hidden = authChoice.value !== "sas";
    sasToken.required = authChoice.value === "sas";
  });
  sasToken.required = true;
  const form = h("form", {class: "destination-form", "aria-label": "Add a destination"},
    field("Destination id", h("input", {name: "id", required: true, pattern: "[a-z0-9\\-]{3,63}",
      autocomplete: "off", spellcheck: "false"}), "3-63 lowercase letters, digits and '-'; the platform posts to it.")[0],
    field("Storage account or endpoint", h("input", {name: "where", required: true, autocomplete: "off",
      spellcheck: "false"}), "An account name (acmeexports), or a blob endpoint URL.")[0],
    field("Container", h("input", {name: "container", required: true, autocomplete: "off", spellcheck: "false"}))[0],
    field("Prefix (optional)", h("input", {name: "prefix", autocomplete: "off", spellcheck: "false"}))[0],
    field("Format", select("format", [["jsonl", "JSON lines (gzip)"], ["csv", "CSV (gzip)"],
      ["parquet", "Parquet (zstd)"]], "jsonl"))[0],
    field("Authentication", authChoice)[0],
    sasField,
    h("div", {class: "field checkbox"},
      h("input", {type: "checkbox", name: "verify", id: "verify-destination", checked: true}),
      h("label", {for: "verify-destination"}, "Prove the credentials first (write, read and delete a probe blob)")),
    result,
    h("button", {type: "submit", class: "primary"}, "Save destination"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await create(form, ctx, result);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function curlBlock(ctx) {
  const text = curlExample();
  const code = h("pre", {class: "code", tabindex: "0", "aria-label": "The same call with curl"}, h("code", {}, text));
  const copy = button("Copy curl command", async () => {
    try {
      await navigator.clipboard.writeText(text);
      ctx.announce("The curl command is copied.");
    } catch {
      ctx.announce("The browser did not allow copying: select the command and copy it.", true);
    }
  });
  return [code, copy];
}

/** The panel: with `first`, the empty state that tells a new operator what to do first. */
export function setupPanel(ctx, {first}) {
  const steps = h("ol", {class: "steps"},
    h("li", {}, "Create a destination: the customer's Blob container and how the app writes to it (a SAS token with " +
      "read and write, a service principal, the app's managed identity or a connection string)."),
    h("li", {}, "Give the platform the intake key and the address POST /api/destinations/{id}/batches: each batch " +
      "it posts is staged and answered 202."),
    h("li", {}, "Batches are exported within seconds; this console shows each destination's health, failures and " +
      "what landed."));
  const content = [
    first ? h("p", {class: "lead"}, "No destination yet. Start here:") : null,
    first ? steps : null,
    h("h3", {}, "With this form"),
    destinationForm(ctx),
    h("h3", {}, "Or with curl (any auth type: see the README or /api/docs)"),
    curlBlock(ctx),
  ];
  if (first) return h("section", {class: "panel empty-state", "aria-label": "Getting started"}, content);
  return h("details", {class: "panel add-destination"}, h("summary", {}, "Add a destination"), content);
}
