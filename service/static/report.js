// Files fetched with the key and saved (labels, a model's zip, a report's data), and a finished job's report
// shown in the page's frame.

import { $, button, el, short } from "./dom.js";
import { notify, state, writeFragment } from "./state.js";
import { api, describe } from "./api.js";

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// A file fetched with the key and saved under `name`; while it comes its button says so and waits (also
// when a refresh builds the row anew), as a model's zip can take seconds.
export function downloadButton(text, action, id, path, name, what) {
  const busy = state.downloading.has(path);
  const node = button(busy ? `${text}…` : text, action, id, async () => {
    notify(null);
    state.downloading.add(path);
    Object.assign(node, { textContent: `${text}…`, disabled: true });
    try {
      const response = await api(path);
      saveBlob(await response.blob(), name);
    } catch (err) {
      notify(`The ${what}: ${describe(err)}`);
    } finally {
      state.downloading.delete(path);
      const rebuilt = `button[data-action="${action}"][data-id="${CSS.escape(id)}"]`;
      for (const same of document.querySelectorAll(rebuilt)) {
        Object.assign(same, { textContent: text, disabled: state.offline });
      }
    }
  }, what);
  node.disabled = busy;
  return node;
}

async function downloadReportData(jobId) {
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/report?format=json`);
    saveBlob(await response.blob(), `report-${jobId}.json`);
  } catch (err) {
    $("viewer-status").textContent = `Report data: ${describe(err)}`;
  }
}

// The report is fetched with the key and shown from a blob: URL in a frame without scripts
// (sandbox="allow-same-origin" lets this page count the frame's decoded images).
export async function showReport(jobId, scroll = true) {
  const viewer = $("viewer");
  const frame = $("viewer-frame");
  state.shown = jobId;
  state.wanted = null; // one asked for by the address and still running gives way to this one
  writeFragment(); // the address opens this report again
  viewer.hidden = false;
  Object.assign(viewer.dataset, { jobId, state: "loading", images: "", decoded: "" });
  $("viewer-title").textContent = `of job ${short(jobId)}`;
  $("viewer-status").textContent = "Building or fetching the report…";
  if (scroll) viewer.scrollIntoView({ block: "start" });
  try {
    const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/report`);
    const blob = new Blob([await response.arrayBuffer()], { type: "text/html" });
    if (state.shown !== jobId) return; // another report was asked for meanwhile
    if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
    state.reportUrl = URL.createObjectURL(blob);
    $("viewer-open").href = state.reportUrl;
    $("viewer-download").href = state.reportUrl;
    $("viewer-download").download = `report-${jobId}.html`;
    $("viewer-json").onclick = () => downloadReportData(jobId);
    frame.onload = () => inspectFrame(jobId);
    frame.src = state.reportUrl;
  } catch (err) {
    viewer.dataset.state = "error";
    $("viewer-status").textContent = `Report of ${short(jobId)}: ${describe(err)}`;
  }
}

function inspectFrame(jobId) {
  const viewer = $("viewer");
  const frame = $("viewer-frame");
  if (state.shown !== jobId) return;
  const doc = frame.contentDocument;
  const images = doc ? Array.from(doc.images) : [];
  const decoded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  Object.assign(viewer.dataset, { state: "shown", images: String(images.length), decoded: String(decoded) });
  $("viewer-status").textContent =
    decoded === images.length ? "" : `${images.length - decoded} of ${images.length} figures did not load`;
  if (doc) frame.style.height = `${doc.documentElement.scrollHeight + 24}px`;
}

export function closeReport() {
  state.shown = null;
  state.wanted = null;
  writeFragment();
  $("viewer").hidden = true;
  $("viewer-frame").removeAttribute("src");
  if (state.reportUrl) URL.revokeObjectURL(state.reportUrl);
  state.reportUrl = null;
}
