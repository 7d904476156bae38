"""Writing a report into a folder: its PNGs, report.json and report.html, each through a temp file and a
rename; ``write_report`` for a run."""

from __future__ import annotations

import json
from pathlib import Path

from models.label_report.content import LabelReport
from models.label_report.run_data import build_report
from models.report import write_bytes_atomic

__all__ = ["write_files", "write_report"]


def write_files(report: LabelReport, out: Path) -> Path:
    """The PNGs, report.json and report.html into ``out``; returns the page's path."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in report.figures.items():
            write_bytes_atomic(out / name, png)
        write_bytes_atomic(
            out / "report.json", (json.dumps(report.data, indent=1, allow_nan=False) + "\n").encode()
        )
        write_bytes_atomic(out / "report.html", report.html().encode("utf-8"))
    except OSError as err:
        raise ValueError(f"out: cannot write the report into {out}: {err.strerror or err}") from None
    return out / "report.html"


def write_report(
    run_dir: str | Path, out_dir: str | Path | None = None, dataset_dir: str | Path | None = None
) -> Path:
    """Write report.html (self-contained), report.json (the plotted data) and the PNGs into ``out_dir``
    (default RUN/report/); returns the page's path."""
    report = build_report(run_dir, dataset_dir)
    return write_files(report, Path(out_dir) if out_dir is not None else Path(run_dir) / "report")
