"""Render the runbook data back to Markdown (``rollbot runbook``).

The data in ``bot.runbook`` is the source; this is how people read it. The
layout follows the team's runbook.md so a reader recognises every section, and
adds what the data knows beyond it: which methods each branch allows, what each
method may lose, and the notes on commands that have drifted from the tools.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.runbook import RUNBOOK, DecisionNode, Method, Runbook

_RULE = "---"


def render_markdown(runbook: Runbook = RUNBOOK) -> str:
    """The whole runbook as one Markdown document."""
    sections = [
        _header(runbook),
        _decision_tree(runbook),
        *(_method(runbook, m) for m in _methods_in_order(runbook)),
        _contacts(runbook),
        _checklists(runbook),
        _prevention(runbook),
        _scenarios(runbook),
        _drill(runbook),
        _audit_log(runbook),
        _references(runbook),
    ]
    body = f"\n\n{_RULE}\n\n".join(s.strip("\n") for s in sections if s.strip())
    return body + "\n" + _footer(runbook)


def _code(lines: Iterable[str] | str, language: str = "bash", indent: str = "") -> str:
    text = lines if isinstance(lines, str) else "\n".join(lines)
    block = [f"```{language}", *text.split("\n"), "```"]
    return "\n".join(f"{indent}{line}" if line else "" for line in block)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _header(rb: Runbook) -> str:
    return f"# {rb.title}\n\n> **Important:** {rb.important}"


def _tree_lines(rb: Runbook, node: DecisionNode, prefix: str) -> list[str]:
    lines: list[str] = []
    for i, choice in enumerate(node.choices):
        last = i == len(node.choices) - 1
        lines.append(f"{prefix}{'└─' if last else '├─'} {choice.tree_line}")
        if choice.next_node:
            child_prefix = prefix + ("     " if last else "│    ")
            lines += _tree_lines(rb, rb.node(choice.next_node), child_prefix)
    return lines


def _path_labels(rb: Runbook, path: tuple[str, ...]) -> list[str]:
    node, labels = rb.node(rb.root), []
    for answer in path:
        choice = node.choice(answer)
        labels.append(choice.label)
        if choice.next_node:
            node = rb.node(choice.next_node)
    return labels


def _decision_tree(rb: Runbook) -> str:
    root = rb.node(rb.root)
    tree = [rb.tree_title or root.question, *_tree_lines(rb, root, "  ")]
    branches = []
    for path, leaf in rb.leaves():
        labels = _path_labels(rb, path)
        recommended, *others = leaf.methods
        text = f"- {' → '.join(labels)}: **{rb.method(recommended).title}**"
        if len(leaf.methods) > 1:
            text += " (recommended)"
        if others:
            text += "; also allowed: " + ", ".join(rb.method(m).title for m in others)
        branches.append(text + f"  \n  `{' > '.join(path)}`")
    questions = "\n".join(
        f"- `{n.id}`: {n.question} ({', '.join(f'`{c.id}`' for c in n.choices)})"
        for n in rb.nodes.values()
    )
    return (
        "## Decision Tree\n\n"
        + _code(tree, language="")
        + "\n\n**Methods per branch:**\n\n"
        + "\n".join(branches)
        + "\n\n**Questions the bot asks:**\n\n"
        + questions
    )


def _methods_in_order(rb: Runbook) -> list[Method]:
    numbered = sorted(
        (m for m in rb.methods.values() if m.option is not None), key=lambda m: m.option or 0
    )
    return numbered + [m for m in rb.methods.values() if m.option is None]


def _method(rb: Runbook, m: Method) -> str:
    in_tree = any(m.id in leaf.methods for _, leaf in rb.leaves())
    origin = "decision-tree method" if in_tree else "common-scenario action"
    heading = m.heading if m.option is not None else f"{m.heading} ({origin})"
    parts = [f"## {heading}", f"**When to use:** {m.when_to_use}"]
    for label, items in (
        ("Advantages", m.advantages),
        ("Disadvantages", m.disadvantages),
        ("Prerequisites", m.prerequisites),
    ):
        if items:
            parts.append(f"**{label}:**\n\n{_bullets(items)}")
    if m.destructive:
        parts.append(
            "**Destructive:** overwrites or replaces database state; rollbot needs an approval "
            f"and a verified safety snapshot first.  \n**Data at risk:** {m.data_loss}"
        )
    else:
        parts.append(f"**Data at risk:** {m.data_loss or 'none'}")
    if m.steps:
        steps = []
        for n, step in enumerate(m.steps, start=1):
            text = f"{n}. **{step.title}**"
            if step.commands:
                text += "\n" + _code(step.commands, indent="   ")
            if step.note:
                text += f"\n\n   _Note:_ {step.note}"
            steps.append(text)
        parts.append("**Process:**\n\n" + "\n\n".join(steps))
    if m.example:
        parts.append("**Example:**\n\n" + _code(m.example, m.example_language))
    for v in m.variants:
        text = f"### {v.title}:\n\n" + _code(v.commands)
        if v.note:
            text += f"\n\n_Note:_ {v.note}"
        parts.append(text)
    if m.script:
        parts.append(f"**Script:** See `{m.script}`")
    return "\n\n".join(parts)


def _contacts(rb: Runbook) -> str:
    groups = (("business_hours", "During Business Hours"), ("after_hours", "After Hours"))
    parts = ["## Emergency Contacts"]
    for when, label in groups:
        lines = [c.line for c in rb.contacts if c.when == when]
        if lines:
            parts.append(f"**{label}:**\n\n" + _bullets(lines))
    return "\n\n".join(parts)


def _checklists(rb: Runbook) -> str:
    def items(checklist):
        return "\n".join(f"- [ ] {i.text} (`{i.id}`)" for i in checklist)

    return (
        "## Rollback Checklist\n\n"
        f"Before performing a rollback:\n\n{items(rb.before_checklist)}\n\n"
        f"After rollback:\n\n{items(rb.after_checklist)}"
    )


def _prevention(rb: Runbook) -> str:
    practices = []
    for n, p in enumerate(rb.prevention, start=1):
        text = f"{n}. **{p.title}**: {p.detail}"
        if p.example:
            text += "\n" + _code(p.example, p.example_language, indent="   ")
        practices.append(text)
    return "## Prevention Best Practices\n\n" + "\n\n".join(practices)


def _scenarios(rb: Runbook) -> str:
    parts = ["## Common Scenarios"]
    for s in rb.scenarios:
        text = f"### Scenario: {s.title}\n\n**Solution:** {s.solution}"
        if s.methods:
            text += "  \n**Method:** " + ", ".join(rb.method(m).title for m in s.methods)
        if s.commands:
            text += "\n\n" + _code(s.commands)
        parts.append(text)
    return "\n\n".join(parts)


def _drill(rb: Runbook) -> str:
    steps = "\n".join(f"{n}. {step}" for n, step in enumerate(rb.drill, start=1))
    return f"## Testing Rollback Procedures\n\n**Quarterly Drill:**\n\n{steps}"


def _audit_log(rb: Runbook) -> str:
    text = (
        "## Logging Migration Events\n\n"
        "All migrations should be logged for audit trail.\n\n"
        f"Line format: `{rb.audit_log_format}` (timestamp in UTC, `%Y-%m-%dT%H:%M:%SZ`)"
    )
    if rb.audit_log_commands:
        text += "\n\n" + _code(rb.audit_log_commands)
    return text


def _references(rb: Runbook) -> str:
    if not rb.references:
        return ""
    return "## References\n\n" + _bullets(f"[{r.title}]({r.url})" for r in rb.references)


def _footer(rb: Runbook) -> str:
    lines = [
        f"**{label}:** {value}"
        for label, value in (
            ("Last Updated", rb.last_updated),
            ("Maintained By", rb.maintained_by),
            ("Review Schedule", rb.review_schedule),
        )
        if value
    ]
    return f"\n{_RULE}\n\n" + "  \n".join(lines) + "\n" if lines else ""
