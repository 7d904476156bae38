// Building the page's elements, and the words for numbers, times and sizes: no state, no requests.

export const $ = (id) => document.getElementById(id);

// Elements are built, never parsed from strings: every value from the API lands as text.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node && name !== "list") node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export const short = (id) => (id ? String(id).slice(0, 10) : "");

// A list's id: the whole of it in the page, its start shown (page.css: code.id), so that selecting or
// copying it gives the id that unilabel-remote and the API take (they refuse a shortened one).
export const idCell = (id, ...more) => el("td", { title: id }, el("code", { className: "id" }, id), ...more);
export const pct = (x) => `${Math.round((x || 0) * 100)}%`;

export function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function sizeText(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = n;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit ? `${size.toFixed(1)} ${units[unit]}` : `${n} B`;
}

// A row's button: `label` is what a screen reader says ("delete dataset 3fe4084b06"), the text alone
// repeats on every row.
export function button(text, action, id, onClick, label, owner) {
  const props = { type: "button", className: "link", dataset: { action, id }, onclick: onClick };
  if (owner) props.dataset.owner = owner;
  if (label) props["aria-label"] = label;
  return el("button", props, text);
}
