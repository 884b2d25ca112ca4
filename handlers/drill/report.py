"""The drill's outputs: a terminal table, and a Markdown and an HTML report with a timing chart.

The HTML is one self-contained file (inline SVG, no JavaScript, no external
assets) so it can be attached to the quarterly review as is. Every string goes
through ``redact()``: the throwaway server's password must never reach a report.
"""

from __future__ import annotations

import html
from pathlib import Path

from bot.redact import redact
from handlers.drill.runner import DrillResult
from handlers.drill.timing import MethodOutcome, StepTiming

COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")


def _r(text: object) -> str:
    return redact(text)


def _e(text: object) -> str:
    return html.escape(redact(text))


def terminal_table(result: DrillResult) -> str:
    rows = [("method", "steps", "seconds", "verified")]
    for o in result.outcomes:
        rows.append(
            (o.title, str(o.incident_steps), f"{o.seconds:.1f}", "yes" if o.verified else "NO")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    out = []
    for n, row in enumerate(rows):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            out.append(line)
    return _r("\n".join(out))


def _summary(result: DrillResult) -> list[str]:
    d = result.dataset
    lines = [
        f"- Started: {result.started_at:%Y-%m-%d %H:%M:%S} UTC"
        + (
            f", took {(result.finished_at - result.started_at).total_seconds():.0f}s"
            if result.finished_at
            else ""
        ),
        f"- PostgreSQL: {result.server_version or 'not started'} ({result.server_where})",
        f"- Migrations folder: `{result.migrations_folder}`; problematic migration applied on "
        f"purpose: `{result.problematic}`",
    ]
    if d:
        lines.append(
            f"- Dataset: {d.users:,} users, {d.orders:,} orders, {d.events:,} events with json "
            f"payloads; {d.bytes / 1_000_000:,.0f} MB, generated in {d.seconds:.1f}s"
        )
    verified = sum(o.verified for o in result.outcomes)
    lines.append(
        f"- Result: {verified} of {len(result.outcomes)} methods verified"
        + ("" if result.ok else " (**the drill FAILED**)")
    )
    lines += [f"- Note: {n}" for n in result.notes]
    return [_r(x) for x in lines]


def _step_rows(steps: list[StepTiming]) -> list[str]:
    return [
        f"| {s.title} | `{s.kind}` | {s.seconds:.2f} | {'ok' if s.ok else 'FAILED'} | "
        f"{s.summary.replace('|', '/').replace(chr(10), ' ')[:200]} |"
        for s in steps
    ]


def markdown(result: DrillResult) -> str:
    out = ["# rollbot drill report", "", *_summary(result), ""]
    out += ["## Methods", "", "| method | environment | incident | steps | seconds | verified |"]
    out.append("|---|---|---|---:|---:|---|")
    for o in result.outcomes:
        out.append(
            f"| {o.title} | {o.environment} ({o.tier}) | {o.incident_ref or '-'} ({o.incident_state or '-'}) "
            f"| {o.incident_steps} | {o.seconds:.1f} | {'yes' if o.verified else '**NO**'} |"
        )
    if result.setup:
        out += ["", "## Setup", "", "| what | seconds | ok |", "|---|---:|---|"]
        out += [
            f"| {s.title} | {s.seconds:.2f} | {'ok' if s.ok else 'FAILED'} |" for s in result.setup
        ]
    for o in result.outcomes:
        out += _method_md(o)
    return _r("\n".join(out) + "\n")


def _method_md(o: MethodOutcome) -> list[str]:
    out = ["", f"## {o.title}", ""]
    out.append(
        f"- Runbook method `{o.method_id}` in `{o.environment}` ({o.tier}), {o.incident_ref}"
    )
    out.append(f"- Documented data loss: {o.expected_loss}")
    if o.note:
        out.append(f"- {o.note}")
    if o.setup:
        out += [
            "",
            "Breaking it (outside the incident):",
            "",
            "| step | kind | seconds | ok | result |",
        ]
        out.append("|---|---|---:|---|---|")
        out += _step_rows(o.setup)
    out += ["", "The incident, step by step:", "", "| step | kind | seconds | ok | result |"]
    out.append("|---|---|---:|---|---|")
    out += _step_rows(o.steps)
    out += ["", "Verification:", ""]
    out += [f"- ✔ {c}" for c in o.checks]
    out += [f"- ✘ {p}" for p in o.problems]
    return out


def timing_svg(result: DrillResult, width: int = 860) -> str:
    """Horizontal stacked bars: one row per method, one segment per step, seconds to scale."""
    label_w, row_h, top = 300, 34, 30
    outcomes = result.outcomes
    longest = max((o.seconds for o in outcomes), default=0.0) or 1.0
    scale = (width - label_w - 70) / longest
    height = top + row_h * len(outcomes) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="time per method and step">',
        f'<text x="{label_w}" y="18" font-size="12" fill="#555">seconds per step '
        "(hover a segment for its name)</text>",
    ]
    for i, o in enumerate(outcomes):
        y = top + i * row_h
        mark = "✔" if o.verified else "✘"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 20}" font-size="13" text-anchor="end">'
            f"{_e(o.title)} {mark}</text>"
        )
        x = float(label_w)
        for j, s in enumerate(o.steps):
            w = max(s.seconds * scale, 1.0)
            color = COLORS[j % len(COLORS)] if s.ok else "#d62728"
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 6}" width="{w:.1f}" height="{row_h - 12}" '
                f'fill="{color}"><title>{_e(s.title)}: {s.seconds:.2f}s</title></rect>'
            )
            x += w
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + 20}" font-size="12" fill="#333">{o.seconds:.1f}s</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def html_report(result: DrillResult) -> str:
    rows = "".join(
        f"<tr><td>{_e(o.title)}</td><td>{_e(o.environment)} ({_e(o.tier)})</td>"
        f"<td>{_e(o.incident_ref)}</td><td class=n>{o.incident_steps}</td>"
        f"<td class=n>{o.seconds:.1f}</td>"
        f"<td class={'ok' if o.verified else 'bad'}>{'yes' if o.verified else 'NO'}</td></tr>"
        for o in result.outcomes
    )
    sections = []
    for o in result.outcomes:
        steps = "".join(
            f"<tr><td>{_e(s.title)}</td><td><code>{_e(s.kind)}</code></td>"
            f"<td class=n>{s.seconds:.2f}</td><td class={'ok' if s.ok else 'bad'}>"
            f"{'ok' if s.ok else 'FAILED'}</td><td>{_e(s.summary)}</td></tr>"
            for s in (*o.setup, *o.steps)
        )
        checks = "".join(f"<li class=ok>✔ {_e(c)}</li>" for c in o.checks)
        checks += "".join(f"<li class=bad>✘ {_e(p)}</li>" for p in o.problems)
        sections.append(
            f"<h2>{_e(o.title)}</h2><p>Runbook method <code>{_e(o.method_id)}</code> in "
            f"<code>{_e(o.environment)}</code> ({_e(o.tier)}), {_e(o.incident_ref)}. "
            f"Documented data loss: {_e(o.expected_loss)} {_e(o.note)}</p>"
            "<table><tr><th>step</th><th>kind</th><th>seconds</th><th>ok</th><th>result</th></tr>"
            f"{steps}</table><ul>{checks}</ul>"
        )
    summary = "".join(f"<li>{_e(line.removeprefix('- '))}</li>" for line in _summary(result))
    return _r(
        "<!doctype html><html><head><meta charset=utf-8><title>rollbot drill report</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;vertical-align:top}.n{text-align:right}.ok{color:#2a7d2a}"
        ".bad{color:#c62828;font-weight:bold}code{background:#f4f4f4}</style></head><body>"
        f"<h1>rollbot drill report</h1><ul>{summary}</ul>"
        "<table><tr><th>method</th><th>environment</th><th>incident</th><th>steps</th>"
        f"<th>seconds</th><th>verified</th></tr>{rows}</table>"
        f"<h2>Timing</h2>{timing_svg(result)}{''.join(sections)}</body></html>\n"
    )


def write_reports(result: DrillResult, output: Path) -> tuple[Path, Path]:
    """``drill-report-<timestamp>.md`` and ``.html`` in ``output``."""
    stamp = result.started_at.strftime("%Y%m%d-%H%M%S")
    output.mkdir(parents=True, exist_ok=True)
    md = output / f"drill-report-{stamp}.md"
    page = output / f"drill-report-{stamp}.html"
    md.write_text(markdown(result), encoding="utf-8")
    page.write_text(html_report(result), encoding="utf-8")
    return md, page
