// The page's two forms: upload a dataset (how much is sent said as it goes) and start a job (its settings
// read as `unilabel train --set` reads them); each says in the form how its request went.

import { $, short, sizeText } from "./dom.js";
import { state } from "./state.js";
import { api, refusal, sendWithProgress } from "./api.js";
import { refresh } from "./lists.js";

// A setting as `unilabel train --set NAME=VALUE` reads it (models/config.py, parse_override): true or
// false, null or none, a number as Python's int() or float() reads one (not JavaScript's Number(), which
// takes 0x10 and 0b1), else the text itself.
const INTEGER = /^[+-]?\d(_?\d)*$/;
const DECIMAL = /^[+-]?(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?$/;
function settingValue(raw) {
  const text = raw.trim();
  const lowered = text.toLowerCase();
  if (lowered === "true" || lowered === "false") return lowered === "true";
  if (lowered === "null" || lowered === "none") return null;
  return INTEGER.test(text) || DECIMAL.test(text) ? Number(text.replaceAll("_", "")) : text;
}

function parseSettings(text) {
  const settings = {};
  for (const pair of text.split(/\s+/).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error(`settings: expected name=value, got "${pair}"`);
    settings[pair.slice(0, at)] = settingValue(pair.slice(at + 1));
  }
  return settings;
}

// Runs a form's request with its button disabled, and says in the form how it went.
async function submitForm(event, buttonId, messageId, work) {
  event.preventDefault();
  const button = $(buttonId);
  const message = $(messageId);
  button.disabled = true;
  state.submitting.add(buttonId); // a refresh meanwhile keeps it disabled
  message.className = "form-message";
  message.dataset.outcome = "";
  try {
    message.textContent = await work((text) => (message.textContent = text));
    message.dataset.outcome = "done";
    refresh();
  } catch (err) {
    message.replaceChildren(...refusal(err));
    message.className = "form-message failed";
    message.dataset.outcome = "failed";
  } finally {
    state.submitting.delete(buttonId);
    button.disabled = state.offline || (buttonId === "job-submit" && state.ownDatasets === 0);
  }
}

// The multipart field a chosen file goes in, by its extension, so that any names do: the API reads the
// .csv as utterances.csv and the .npz as features.npz (two of a kind are refused, naming the field).
function uploadRole(name) {
  const lowered = name.toLowerCase();
  if (lowered.endsWith(".csv")) return "utterances";
  if (lowered.endsWith(".npz")) return "features";
  return "archive";
}

export function uploadDataset(event) {
  return submitForm(event, "upload-submit", "upload-message", async (say) => {
    const files = Array.from($("upload-files").files);
    const form = new FormData();
    for (const file of files) form.append(uploadRole(file.name), file, file.name);
    const names = files.map((f) => f.name).join(" and ");
    say(`Uploading ${names}…`);
    const response = await sendWithProgress("/v1/datasets", form, (sent, total) => {
      // all sent: the service checks the files before it answers (seconds for a large dataset)
      say(sent < total ? `Uploading ${names}: ${Math.floor((100 * sent) / total)}% of ${sizeText(total)}…`
        : `Uploaded ${sizeText(total)}; the service checks the dataset…`);
    });
    const dataset = response.json;
    state.pickDataset = dataset.id;
    $("upload-form").reset();
    const before = response.status === 200 ? " (uploaded before)" : "";
    return `Dataset ${short(dataset.id)}: ${dataset.n} utterances${before}; start a job on it above.`;
  });
}

export function startJob(event) {
  return submitForm(event, "job-submit", "job-message", async () => {
    const body = {
      dataset_id: $("job-dataset").value,
      strategy: $("job-strategy").value,
      seed: Number($("job-seed").value),
      hyperparameters: parseSettings($("job-settings").value),
    };
    if ($("job-preset").value) body.preset = $("job-preset").value;
    // the API answers a run already queued or running with that job (202, as for a new one): the jobs seen
    // before the request tell the two apart, those of every page and state shown and those started here (the
    // page shown may not hold the job started, on the newest page)
    const seen = new Set(state.jobsSeen);
    const response = await api("/v1/jobs", { json: body });
    const job = await response.json();
    state.jobsSeen.add(job.id);
    // followed from here, on whatever page, until it ends (lists.js: followed())
    if (state.seenStates && !state.seenStates.has(job.id)) state.seenStates.set(job.id, job.state);
    if (response.status === 200) return `Job ${short(job.id)} ${job.state}: this run had succeeded before.`;
    if (seen.has(job.id)) {
      return `Job ${short(job.id)} is this run (same dataset, strategy, seed and settings), ${job.state} ` +
        "already: nothing new was queued.";
    }
    return `Job ${short(job.id)} ${job.state}.`;
  });
}
