"""A finding: one check's verdict with its evidence, the fix, and the PITFALLS.md row that explains it."""

from dataclasses import dataclass, field

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}


@dataclass
class Finding:
    area: str          # data, initialisation, gradients, overfit, history
    status: str        # ok | warn | fail
    title: str
    evidence: str
    fix: str = ""
    pitfall: str = ""  # the row id in PITFALLS.md, e.g. "D5"
    details: list[str] = field(default_factory=list)  # extra markdown lines (tables) for the report


def worst(findings: list[Finding]) -> str:
    statuses = {finding.status for finding in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def _cell(text: str) -> str:
    """Evidence may quote characters ('|' spelled in byte pieces): a bare '|' would end its table cell."""
    return text.replace("|", r"\|")


def render_markdown(findings: list[Finding], header: list[str]) -> str:
    lines = ["# Diagnosis", "", *header, ""]
    counts = {status: sum(f.status == status for f in findings) for status in (FAIL, WARN, OK)}
    lines += [f"**{counts[FAIL]} problem(s), {counts[WARN]} warning(s), {counts[OK]} check(s) passed.** "
              "Each finding names its row in PITFALLS.md by its id (D1, D2, ...).", ""]
    lines += ["| | area | finding | evidence |", "|---|---|---|---|"]
    lines += [f"| {MARKS[f.status].strip()} | {f.area} | {f.title} | {_cell(f.evidence)} |" for f in findings]
    for finding in findings:
        if finding.status == OK and not finding.details:
            continue
        lines += ["", f"## {MARKS[finding.status].strip()}: {finding.title}", "", f"Evidence: {finding.evidence}"]
        if finding.fix:
            lines += ["", f"Fix: {finding.fix}" + (f" (PITFALLS.md {finding.pitfall})" if finding.pitfall else "")]
        if finding.details:
            lines += ["", *finding.details]
    return "\n".join(lines) + "\n"


def render_terminal(findings: list[Finding]) -> list[str]:
    lines = []
    for finding in findings:
        lines.append(f"{MARKS[finding.status]}  {finding.area:<14} {finding.title}: {finding.evidence}")
        if finding.status != OK and finding.fix:
            lines.append(f"      {'':<14} fix: {finding.fix}" + (f" (PITFALLS.md {finding.pitfall})"
                                                                  if finding.pitfall else ""))
    return lines
