"""The report: numbers formatted, markdown tables, the sections and target verdicts
printed as they come and written to ``--out`` at the end, with the verdicts and the
recorded results as JSON beside it (``--out`` with ``.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from .processes import load_avg


def fmt_s(seconds) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_mb(num_bytes) -> str:
    return "–" if num_bytes is None else f"{num_bytes / 1e6:,.0f} MB"


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Sections (markdown text), verdicts (target, measured, PASS/FAIL/–) and results
    recorded for the JSON report (a JSON-able value per key)."""

    def __init__(self):
        self.sections: list[str] = []
        self.verdicts: list[tuple[str, str, str]] = []
        self.results: dict[str, object] = {}

    def say(self, text: str) -> None:
        print(text, flush=True)

    def section(self, text: str, *, show: bool = True) -> None:
        """Add a section to the report, and print it unless ``show`` is False."""
        self.sections.append(text)
        if show:
            self.say(text)

    def verdict(self, target: str, measured: str, result: str) -> None:
        self.verdicts.append((target, measured, result))

    def record(self, key: str, value) -> None:
        """``value`` as ``key`` of the JSON report."""
        self.results[key] = value

    @staticmethod
    def passed(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    def write(self, out: Path, header: str, elapsed: float, log: Path) -> None:
        """Write header, sections and the targets table to ``out``, the verdicts and the
        recorded results to ``out`` with ``.json``; print the targets."""
        verdicts = md_table(["target", "measured", "result"],
                            [list(v) for v in self.verdicts]) if self.verdicts else "(none)"
        report = "\n".join([header, *self.sections, "### Targets\n", verdicts,
                            f"\nLoad average at end {load_avg()}; bench took "
                            f"{elapsed:.0f} s.\n"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
        out_json = out.with_suffix(".json") if out.suffix != ".json" else Path(f"{out}.json")
        out_json.write_text(json.dumps({
            "header": header.strip(), "elapsed_s": round(elapsed, 1),
            "verdicts": [dict(zip(("target", "measured", "result"), v)) for v in self.verdicts],
            **self.results}, indent=2, ensure_ascii=False) + "\n")
        self.say("### Targets\n\n" + verdicts)
        self.say(f"\nWrote {out} and {out_json.name} ({elapsed:.0f} s). Logs: {log}")
