"""A finished job's label report (models.label_report): built once, kept in its run directory, served from
there.

A report is deterministic for a run and the code that draws it. Drawing a MOSI-size report takes about 1.5 s
of CPU (matplotlib, under the library's drawing lock), reading the kept files a millisecond, so the first
request builds it in a worker thread (one build at a time per API process: ``ReportCache.builds``; waiting
requests hold no thread) and writes it into ``RUN/report/`` as ``unilabel report RUN`` does (report.html,
report.json, the PNGs), with ``.code-version`` naming the code that drew it; later requests read the files,
and a new code version builds it again. A volume that cannot be written (read-only, full) costs only the
caching: the report built in memory is served.

Nothing of the server's filesystem is served: the report names the dataset by its id (the library would say
its folder's name, "data" in the store), and any absolute path in the report's sentences (an error message
quoting a file, say) is cut to its last component before the page is drawn, so the page and its JSON say the
same.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio

from models.label_report import build_report
from models.label_report.files import write_files
from models.version import code_version

log = logging.getLogger(__name__)

REPORT_DIR = "report"  # RUN/report/, the CLI's default place
STAMP = ".code-version"


@lru_cache(maxsize=1)
def report_version() -> str:
    """What a kept report was drawn with: the library's code version, and this module's own bytes, as the
    served report is the library's page after scrub_paths (a Docker image has no git commit, and its code
    version hashes models/ only: a change here alone left the reports it had kept as they were)."""
    return f"{code_version()}+reports.{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]}"
# An absolute path inside a sentence: "/" not preceded by a word character (so "and/or" and "1/2" stay),
# then segments up to the next space, quote, colon or bracket.
_ABSOLUTE = re.compile(r"(?<![\w.~])(?:/[^\s/\"'():,;]+)+/?")
# What people said, and the ids they gave their utterances, are shown as they gave them: an id is no sentence
# (cut, "/clips/v1/3" read "3" and "<b>x</b>" read "<b>x<b>", a row no one could find in the dataset).
_KEEP = frozenset({"transcript", "id"})


@dataclass(frozen=True)
class ServedReport:
    """The page (self-contained HTML, UTF-8) and the plotted data (report.json's bytes)."""

    html: bytes
    data: bytes


def scrub_paths(value: Any) -> Any:
    """Every string of a JSON value with its absolute paths cut to their last component, transcripts and
    utterance ids left alone."""
    if isinstance(value, dict):
        return {k: v if k in _KEEP else scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str) and "/" in value:
        return _ABSOLUTE.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], value)
    return value


def _read_cached(run_dir: Path) -> ServedReport | None:
    folder = run_dir / REPORT_DIR
    try:
        if (folder / STAMP).read_text().strip() != report_version():
            return None
        html, data = (folder / "report.html").read_bytes(), (folder / "report.json").read_bytes()
    except OSError:  # not built yet, or only partly (the stamp is written last)
        return None
    return ServedReport(html=html, data=data)


def _build(run_dir: Path, dataset_id: str) -> ServedReport:
    """Draw the report and keep it in RUN/report/; when it cannot be written, serve it all the same."""
    cached = _read_cached(run_dir)  # built by the request this one waited for
    if cached is not None:
        return cached
    # named by its id as the listings show it: the folder the artifact store keeps it in is called "data"
    report = build_report(run_dir, dataset_name=dataset_id[:12])
    report.data = scrub_paths(report.data)
    files = report.files()
    folder = run_dir / REPORT_DIR
    try:
        folder.mkdir(exist_ok=True)  # not its parents: a run deleted meanwhile is not made again
        (folder / STAMP).unlink(missing_ok=True)  # files being replaced are not the stamped ones
        write_files(files, folder)
        (folder / STAMP).write_text(report_version() + "\n")
    except (ValueError, OSError) as exc:  # write_files says ValueError for an OSError beneath
        log.warning("report of %s not kept (%s); served from memory", run_dir.name, type(exc).__name__)
    return ServedReport(html=files["report.html"], data=files["report.json"])


class ReportCache:
    """Per API process: reads kept reports in the thread pool, builds missing ones one at a time."""

    def __init__(self) -> None:
        self.builds = anyio.CapacityLimiter(1)

    async def get(self, run_dir: Path, dataset_id: str) -> ServedReport:
        """The report of the finished run in ``run_dir``, its dataset named by ``dataset_id``; raises
        FileNotFoundError or ValueError (from the library) for a run whose files are missing or damaged."""
        cached = await anyio.to_thread.run_sync(_read_cached, run_dir)
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(_build, run_dir, dataset_id, limiter=self.builds)
