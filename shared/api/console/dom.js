// Building elements. Text from the API only ever becomes a text node or an attribute value: nothing here parses
// HTML (the page's policy requires Trusted Types with no policy, so innerHTML and the like would throw anyway).

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setProps(node, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "href" && !String(value).startsWith("#")) throw new Error("only links inside the console");
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

/** An HTML element: h("p", {class: "x"}, "text", child, [more]). Strings become text nodes. */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  return append(node, children);
}

/** An SVG element, the same way. */
export function s(tag, props, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setProps(node, props);
  return append(node, children);
}

export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A real button that runs `action`; while it runs the button is busy and disabled. */
export function button(label, action, props = {}) {
  const node = h("button", {type: "button", ...props}, label);
  node.addEventListener("click", async () => {
    if (node.disabled) return;
    node.disabled = true;
    node.setAttribute("aria-busy", "true");
    try {
      await action(node);
    } finally {
      node.disabled = false;
      node.removeAttribute("aria-busy");
    }
  });
  return node;
}

/** A definition list from [term, value] pairs; pairs whose value is null are left out. */
export function facts(pairs, props = {}) {
  const list = h("dl", {class: "facts", ...props});
  for (const [term, value] of pairs) {
    if (value === null || value === undefined) continue;
    list.append(h("div", {}, h("dt", {}, term), h("dd", {}, value)));
  }
  return list;
}

/** A labelled form control: returns [wrapper, control]. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 10)}`;
  control.id = id;
  const hintNode = hint ? h("span", {class: "hint", id: `${id}-hint`}, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return [h("div", {class: "field"}, h("label", {for: id}, label), control, hintNode), control];
}

export function select(name, options, value) {
  const node = h("select", {name});
  for (const [optionValue, label] of options) {
    node.append(h("option", {value: optionValue, selected: optionValue === value}, label));
  }
  return node;
}
