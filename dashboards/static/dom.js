// The pages' one way to build DOM: el("td", { class: "kind", onclick: f }, child, "text", ...).
//
// Attributes: "class" sets the class name; "style" with an object sets style properties (the CSP
// blocks inline style attributes); "on…" with a function adds that event's listener; true sets an
// empty attribute (hidden, disabled), and undefined, null or false leaves the attribute out.
// Children: nodes as they are, anything else as text; undefined and null are skipped.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  return node;
}

export const $ = (id) => document.getElementById(id);
