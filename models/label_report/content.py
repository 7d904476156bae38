"""The report's content, ``LabelReport``, shared by the run report and the comparison report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LabelReport"]


@dataclass
class LabelReport:
    """A report's content: ``data`` (JSON-able: what every plot and table shows), ``figures`` (PNG bytes by
    file name, in page order) and the page's title; ``html()`` renders the self-contained page."""

    title: str
    data: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)
    kind: str = "run"  # "run" | "compare"

    def html(self) -> str:
        """The page: every figure embedded as a data: URI, inline CSS, no script, no external resource."""
        # imported here: compare.py builds LabelReports, so importing it at the top would be a cycle
        if self.kind == "compare":
            from models.label_report.compare import compare_html

            return compare_html(self)
        from models.label_report.page import run_html

        return run_html(self)

    def files(self) -> dict[str, bytes]:
        """Every file of the report by name, in the order they are written: the PNGs, report.json (the data,
        strict JSON) and report.html."""
        return {
            **self.figures,
            "report.json": (json.dumps(self.data, indent=1, allow_nan=False) + "\n").encode(),
            "report.html": self.html().encode("utf-8"),
        }
