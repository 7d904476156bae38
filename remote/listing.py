"""What ``unilabel-remote`` prints of the API's answers: a few lines for a job, an upload or a download,
and the lists of ``jobs | datasets | models`` as aligned tables, a row per item.

The API's list bodies carry every item whole (a job's 70-odd resolved hyperparameters, a model's metrics of
every split); a person looking for the job to wait on needs its id, state and progress. ``--json`` prints the
body as the API sent it (with ``--all``, every page's items in one such body). Each list ends with its count,
or the range shown and how to see the next page (remote/paging.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from api_schemas.paging import PAGE_DEFAULT
from api_schemas.usage import QUOTAS
from models.cli_output import aligned  # the unilabel CLI's tables (no torch)

VALID_SCORES = ("mae", "corr", "acc2_non0", "acc7")  # what ``wait`` shows of a finished job (MMSA's names)


def splits_text(splits: dict[str, int]) -> str:
    """``train 80, valid 30, test 20`` (the API gives the splits in that order)."""
    return ", ".join(f"{name} {n}" for name, n in splits.items())


def _when(iso: str | None) -> str:
    """``2026-12-03T05:57:39.123+00:00`` -> ``2026-12-03 05:57:39`` (UTC, as the API gives it)."""
    return iso[:19].replace("T", " ") if iso else ""


def _progress(job: dict[str, Any]) -> str:
    if job["state"] == "succeeded":
        return (
            f"done; model deleted {_when(job['model_deleted_at'])}" if job.get("model_deleted_at") else "done"
        )
    if job["state"] not in ("queued", "running"):
        return job.get("error") or ""
    stage = job.get("stage")
    where = f"{stage} {job.get('epoch') or 0}/{job['epochs']} " if stage and job.get("epochs") else ""
    return f"{where}{100 * (job.get('progress') or 0.0):.0f}%"


def _footer(body: dict[str, Any], noun: str, offset: int = 0, limit: int | None = None) -> str:
    """``no jobs``, ``1 job`` or ``12 jobs`` when the list is shown whole; else the range shown and the option
    that shows the next, older page (``jobs 101–200 of 250 (--offset 200 for older)``), with ``--limit`` too
    when one other than the API's default was given, so the command's next page is the same size. ``noun``
    singular; ``offset`` and ``limit`` as asked for."""
    shown, total = len(body["items"]), body["total"]
    if total == 0:
        return f"no {noun}s"
    if shown == total and offset == 0:
        return f"{total} {noun}{'s' * (total > 1)}"
    size = f" --limit {limit}" if limit is not None and limit != PAGE_DEFAULT else ""
    if shown == 0:  # past the list's end: say where its oldest page starts
        last = max(total - (limit or PAGE_DEFAULT), 0)
        return f"no {noun}s at --offset {offset}, of {total} (--offset {last}{size} for the oldest)"
    first, last = offset + 1, offset + shown
    older = f" (--offset {last}{size} for older)" if last < total else ""
    return f"{noun}s {first}–{last} of {total}{older}"


def job_lines(job: dict[str, Any]) -> list[str]:
    """``job ID (mug, seed 1111, preset mosi): queued`` (``running, cancel requested``), then its notes."""
    preset = f", preset {job['preset']}" if job.get("preset") else ""
    asked = job.get("cancel_requested") and job["state"] in ("queued", "running")
    head = f"job {job['id']} ({job['strategy']}, seed {job['seed']}{preset}): {job['state']}"
    head += ", cancel requested" if asked else ""
    return [head, *(f"note: {note}" for note in job.get("notes") or [])]


def submitted_lines(job: dict[str, Any]) -> list[str]:
    """What submitting says: the job's lines, and, for a job that has succeeded already (a new one is queued),
    that it is an earlier job of the same run, returned instead of training again."""
    lines = job_lines(job)
    if job["state"] == "succeeded":
        lines.append(
            "the same run (dataset, strategy, seed, settings and code) had succeeded before: this is that "
            "job, nothing trains again (delete its model to train anew)"
        )
    return lines


def valid_lines(job: dict[str, Any]) -> list[str]:
    """``valid: mae 0.712, corr 0.771, acc2_non0 0.826, acc7 0.401`` when the job has valid metrics."""
    metrics = job.get("metrics") or {}
    scores = [
        f"{m} {metrics[f'valid.{m}']:.3f}" for m in VALID_SCORES if metrics.get(f"valid.{m}") is not None
    ]
    return [f"valid: {', '.join(scores)}"] if scores else []


def finished_lines(job: dict[str, Any]) -> list[str]:
    """What ``wait`` says of a job that ended: its line and notes, then its valid scores and where its labels,
    report and model are, or its error."""
    lines = job_lines(job) + valid_lines(job)
    if job["state"] == "succeeded" and job.get("model_deleted_at"):
        lines.append(f"model deleted at {_when(job['model_deleted_at'])}, with its labels and report")
    elif job["state"] == "succeeded":
        lines.append(f"labels: unilabel-remote labels {job['id']} -o labels.csv")
        lines.append(f"report: unilabel-remote report {job['id']} -o report.html")
        lines.append(f"model:  unilabel-remote download {job['model_id']} -o runs/{job['model_id']}")
    elif job.get("error"):
        lines.append(f"error: {job['error']}")
    return lines


def jobs_table(body: dict[str, Any], offset: int = 0, limit: int | None = None) -> str:
    """A GET /v1/jobs body: id, state, strategy, seed, dataset, last update, then progress (or the error)."""
    rows = [
        [
            j["id"],
            j["state"],
            j["strategy"],
            str(j["seed"]),
            j["dataset_id"][:12],
            _when(j.get("updated_at")),
            _progress(j) + "".join(f"; note: {n}" for n in j.get("notes") or []),
        ]
        for j in body["items"]
    ]
    header = ["job", "state", "strategy", "seed", "dataset", "updated (UTC)", "progress"]
    return _with_footer(header, rows, _footer(body, "job", offset, limit))


def datasets_table(body: dict[str, Any], offset: int = 0, limit: int | None = None) -> str:
    """A GET /v1/datasets body: id, utterances, splits, upload time, the label range (rho, from the labels),
    modalities (d, or [T <= longest, d])."""
    whose = any(d.get("owner") for d in body["items"])  # an admin key's list: which key holds each
    rows = []
    for d in body["items"]:
        modalities = ", ".join(
            f"{m} [T <= {s['shape'][1]}, {s['dim']}]" if s["sequence"] else f"{m} {s['dim']}"
            for m, s in d["modalities"].items()
        )
        rho = (d.get("library") or {}).get("rho")
        rows.append(
            [
                d["id"],
                str(d["n"]),
                splits_text(d["splits"]),
                _when(d.get("created_at")),
                f"[-{rho:g}, {rho:g}]" if rho is not None else "",
                modalities,
                *([d.get("owner") or ""] if whose else []),
            ]
        )
    header = ["dataset", "n", "splits", "uploaded (UTC)", "labels", "modalities", *(["key"] if whose else [])]
    return _with_footer(header, rows, _footer(body, "dataset", offset, limit))


def models_table(body: dict[str, Any], offset: int = 0, limit: int | None = None) -> str:
    """A GET /v1/models body: id (its job's id too), strategy, seed, dataset, creation time, valid scores."""
    rows = []
    for m in body["items"]:
        valid = (m.get("metrics") or {}).get("valid") or {}
        scores = "  ".join(
            f"{name} {valid[name]:.3f}"
            for name in ("mae", "corr")
            if isinstance(valid.get(name), int | float)
        )
        rows.append(
            [
                m["id"],
                m["strategy"],
                str(m["seed"]),
                m["dataset_id"][:12],
                _when(m.get("created_at")),
                scores,
            ]
        )
    header = ["model", "strategy", "seed", "dataset", "created (UTC)", "valid"]
    return _with_footer(header, rows, _footer(body, "model", offset, limit))


def _with_footer(header: list[str], rows: list[list[str]], footer: str) -> str:
    return f"{aligned([header, *rows])}\n{footer}" if rows else footer


def size_text(n: int) -> str:
    """``512 B``, ``1.4 MiB``, ``20.0 GiB``."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def usage_table(body: dict[str, Any]) -> str:
    """A GET /v1/usage body: a row per quota (used, limit, what is left), then when the minute ends."""
    rows = [["quota", "used", "limit", "left"]]
    for name in QUOTAS:
        used, limit = body[name]["used"], body[name]["limit"]
        text = size_text if name == "stored_bytes" else "{:,}".format
        left = "no limit" if limit is None else text(max(limit - used, 0))
        rows.append([name, text(used), "none" if limit is None else text(limit), left])
    minute = f"key {body['name']} ({body['key_id']}); the per-minute counts start again in "
    return f"{aligned(rows)}\n{minute}{math.ceil(body['minute_ends_in_s'])} s"


def upload_line(summary: dict[str, Any], created: bool) -> str:
    """``dataset ID: 130 utterances (train 80, valid 30, test 20); new`` (or ``already uploaded``)."""
    state = "new" if created else "already uploaded"
    return f"dataset {summary['id']}: {summary['n']} utterances ({splits_text(summary['splits'])}); {state}"


def download_line(model_id: str, out: Path, written: list[str], missing: list[str]) -> str:
    """``model ID: 8 files in runs/ID; predict with `unilabel predict runs/ID DATA```, and the text model
    to give it when the run reads one of the server's (model.json names only its folder)."""
    absent = f" (the server has no {', '.join(missing)})" if missing else ""
    head = f"model {model_id}: {len(written)} files in {out}{absent}"
    try:
        text_model = json.loads((out / "model.json").read_text())["net_spec"].get("text_model")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        text_model = None
    if not text_model:  # none, or the packaged default
        return f"{head}; predict with `unilabel predict {out} DATA`"
    return (
        f"{head}; it reads text with the server's text model {text_model!r}: predict with "
        f"`unilabel predict {out} DATA --text-model DIR`, DIR your copy of it"
    )
