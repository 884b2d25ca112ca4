"""The runbook data against the team's runbook.md: nothing may be dropped.

The Markdown is parsed here, in the test only, so that removing an item from
``bot.runbook`` (or the team adding one to runbook.md) fails loudly.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bot.errors import NotFoundError, RollbotError
from bot.runbook import RUNBOOK, Choice, DecisionNode, Runbook
from bot.runbook_markdown import render_markdown

RUNBOOK_MD = Path(__file__).resolve().parents[3] / "shared" / "runbook.md"


def norm(text: str) -> str:
    """Compare text, not formatting: drop emphasis, code ticks, connectors; fold space and case."""
    text = re.sub(r"[*`_]", "", text)
    text = text.replace("├─", " ").replace("└─", " ").replace("│", " ")
    return " ".join(text.split()).lower()


@pytest.fixture(scope="module")
def source() -> str:
    if not RUNBOOK_MD.is_file():
        pytest.fail(f"the team's runbook is missing: {RUNBOOK_MD}")
    return RUNBOOK_MD.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered() -> str:
    return norm(render_markdown())


def sections(md: str) -> dict[str, str]:
    """Level-2 sections by heading text."""
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def code_blocks(md: str) -> list[list[str]]:
    """Lines of each fenced code block, dedented to the fence's indentation."""
    blocks, current, indent = [], None, 0
    for line in md.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("```"):
            if current is None:
                current, indent = [], len(line) - len(stripped)
            else:
                blocks.append(current)
                current = None
            continue
        if current is not None:
            current.append(line[indent:])
    return blocks


def bullets(text: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^- (?!\[ \])(.+)$", text, flags=re.M)]


def after_label(text: str, label: str) -> str:
    """The text following ``**Label:**`` up to the next bold label or heading."""
    m = re.search(rf"\*\*{label}:\*\*(.*?)(?=^\*\*[A-Z][^*]+:\*\*|^#|\Z)", text, re.S | re.M)
    return m.group(1) if m else ""


def option_sections(source: str) -> dict[int, tuple[str, str]]:
    out = {}
    for heading, body in sections(source).items():
        m = re.match(r"Option (\d+): (.+)", heading)
        if m:
            out[int(m.group(1))] = (heading, body)
    return out


# ---- the source's own structure (guards the parsing helpers themselves) ----------------


def test_parser_finds_what_the_runbook_has(source: str) -> None:
    assert sorted(option_sections(source)) == [1, 2, 3, 4]
    checklist = re.findall(r"^- \[ \] (.+)$", source, re.M)
    assert len(checklist) == 14
    assert len(re.findall(r"^### Scenario: ", source, re.M)) == 4


# ---- decision tree -----------------------------------------------------------------------


def tree_lines(source: str) -> list[str]:
    block = code_blocks(sections(source)["Decision Tree"])[0]
    return [line for line in block if "├─" in line or "└─" in line]


def test_every_decision_tree_line_is_in_data_and_rendering(source: str, rendered: str) -> None:
    lines = tree_lines(source)
    assert len(lines) == 6
    data_lines = {norm(c.tree_line) for n in RUNBOOK.nodes.values() for c in n.choices}
    assert len(data_lines) == 6
    for line in lines:
        assert norm(line) in data_lines, line
        assert norm(line) in rendered, line
    first = code_blocks(sections(source)["Decision Tree"])[0][0]
    assert norm(RUNBOOK.tree_title) == norm(first)


def test_rendered_tree_keeps_the_runbooks_shape(source: str) -> None:
    original = code_blocks(sections(source)["Decision Tree"])[0]
    ours = code_blocks(sections(render_markdown())["Decision Tree"])[0]
    assert [line.rstrip() for line in ours] == [line.rstrip() for line in original]


def test_tree_branches_name_the_briefed_methods() -> None:
    leaves = {path: c.methods for path, c in RUNBOOK.leaves()}
    assert leaves == {
        ("development",): ("dev_reset",),
        ("staging",): ("forward_fix", "neon_branch"),
        ("production", "data_corruption"): ("pitr", "neon_branch", "pg_dump_restore"),
        ("production", "schema_only"): ("forward_fix",),
        ("production", "app_broken"): ("app_rollback",),
    }
    assert RUNBOOK.root == "environment"
    assert [c.id for c in RUNBOOK.node("environment").choices] == [
        "development",
        "staging",
        "production",
    ]


# ---- methods -----------------------------------------------------------------------------


def test_every_option_heading_is_a_method(source: str, rendered: str) -> None:
    by_option = {m.option: m for m in RUNBOOK.methods.values() if m.option is not None}
    for number, (heading, _body) in option_sections(source).items():
        assert number in by_option, heading
        assert norm(by_option[number].heading) == norm(heading)
        assert norm(heading) in rendered
    assert set(by_option) == set(option_sections(source))


@pytest.mark.parametrize("label", ["Advantages", "Disadvantages", "Prerequisites"])
def test_method_lists_match_the_runbook(source: str, rendered: str, label: str) -> None:
    field = label.lower()
    by_option = {m.option: m for m in RUNBOOK.methods.values() if m.option is not None}
    for number, (heading, body) in option_sections(source).items():
        for item in bullets(after_label(body, label)):
            assert norm(item) in {norm(x) for x in getattr(by_option[number], field)}, (
                heading,
                item,
            )
            assert norm(item) in rendered


def test_when_to_use_and_process_steps(source: str, rendered: str) -> None:
    by_option = {m.option: m for m in RUNBOOK.methods.values() if m.option is not None}
    for number, (heading, body) in option_sections(source).items():
        method = by_option[number]
        when = re.search(r"\*\*When to use:\*\* (.+)", body).group(1)
        assert norm(method.when_to_use) == norm(when), heading
        steps = re.findall(r"^\d+\. \*\*(.+?)\*\*", after_label(body, "Process"), re.M)
        titles = [norm(s.title) for s in method.steps]
        assert [norm(s) for s in steps] == titles[: len(steps)], heading
        for s in steps:
            assert norm(s) in rendered


def _data_code_blocks() -> list[tuple[str, ...]]:
    blocks: list[tuple[str, ...]] = []
    for m in RUNBOOK.methods.values():
        blocks += [s.commands for s in m.steps]
        blocks += [v.commands for v in m.variants]
        blocks.append(tuple(m.example.splitlines()))
    blocks += [s.commands for s in RUNBOOK.scenarios]
    blocks += [tuple(p.example.splitlines()) for p in RUNBOOK.prevention]
    blocks.append(RUNBOOK.audit_log_commands)
    return [tuple(line.rstrip() for line in b) for b in blocks if b]


def test_every_code_block_of_the_runbook_is_kept_verbatim(source: str) -> None:
    """Each code block (commands, comments, examples) is in the data and the rendering, whole."""
    data_blocks = _data_code_blocks()
    rendered_blocks = [tuple(line.rstrip() for line in b) for b in code_blocks(render_markdown())]
    source_blocks = code_blocks(source)
    assert len(source_blocks) == 27
    for block in source_blocks:
        block = tuple(line.rstrip() for line in block)
        assert block in rendered_blocks, block
        if "├─" not in "".join(block):
            assert block in data_blocks, block


def test_pitr_variants(source: str) -> None:
    pitr = RUNBOOK.method("pitr")
    assert [v.id for v in pitr.variants] == ["neon", "rds", "cloudsql"]
    _heading, body = option_sections(source)[3]
    headings = re.findall(r"^### (.+?):?$", body, re.M)
    assert [norm(v.title) for v in pitr.variants] == [norm(h) for h in headings]
    for variant, block in zip(pitr.variants, code_blocks(body), strict=True):
        assert [line.rstrip() for line in variant.commands] == [line.rstrip() for line in block]
    assert "aws rds restore-db-instance-to-point-in-time" in pitr.variant("rds").commands[0]
    with pytest.raises(NotFoundError, match="neon, rds, cloudsql"):
        pitr.variant("azure")


def test_method_flags() -> None:
    destructive = {m.id for m in RUNBOOK.methods.values() if m.destructive}
    assert destructive == {"pitr", "pg_dump_restore", "neon_branch", "dev_reset", "stuck_migration"}
    for m in RUNBOOK.methods.values():
        assert bool(m.data_loss) == m.destructive, m.id
        assert m.steps, m.id
    assert [m.id for m in RUNBOOK.methods.values() if m.preferred] == ["forward_fix"]
    assert RUNBOOK.method("forward_fix").example.startswith("// Before (problematic)")
    assert RUNBOOK.method("dev_reset").option is None
    assert RUNBOOK.method("app_rollback").option is None
    rendered = render_markdown()
    assert f"## {RUNBOOK.method('stuck_migration').heading} (common-scenario action)" in rendered
    assert f"## {RUNBOOK.method('dev_reset').heading} (decision-tree method)" in rendered


# ---- checklists, contacts, prevention, scenarios, drill ---------------------------------


def test_checklists(source: str, rendered: str) -> None:
    body = sections(source)["Rollback Checklist"]
    before_text, after_text = body.split("After rollback:")
    before = re.findall(r"^- \[ \] (.+)$", before_text, re.M)
    after = re.findall(r"^- \[ \] (.+)$", after_text, re.M)
    assert (len(before), len(after)) == (8, 6)
    assert [norm(i.text) for i in RUNBOOK.before_checklist] == [norm(x) for x in before]
    assert [norm(i.text) for i in RUNBOOK.after_checklist] == [norm(x) for x in after]
    ids = [i.id for i in (*RUNBOOK.before_checklist, *RUNBOOK.after_checklist)]
    assert len(set(ids)) == 14
    assert all(i.startswith("before.") for i in ids[:8])
    assert all(i.startswith("after.") for i in ids[8:])
    for item in before + after:
        assert norm(f"- [ ] {item}") in rendered
    assert RUNBOOK.checklist_item("before.identify_migration").text.startswith("Identify")
    with pytest.raises(NotFoundError):
        RUNBOOK.checklist_item("before.nothing")


def test_contacts(source: str, rendered: str) -> None:
    body = sections(source)["Emergency Contacts"]
    business, after_hours = body.split("**After Hours:**")
    expected = [("business_hours", b) for b in bullets(business)] + [
        ("after_hours", b) for b in bullets(after_hours)
    ]
    assert len(expected) == 4
    assert [(c.when, norm(c.line)) for c in RUNBOOK.contacts] == [
        (when, norm(line)) for when, line in expected
    ]
    for _when, line in expected:
        assert norm(line) in rendered
    assert [c.name for c in RUNBOOK.contacts if c.production_only] == ["CTO"]


def test_prevention(source: str, rendered: str) -> None:
    body = sections(source)["Prevention Best Practices"]
    titles = re.findall(r"^\d+\. \*\*(.+?)\*\*", body, re.M)
    assert len(titles) == 4
    assert [norm(p.title) for p in RUNBOOK.prevention] == [norm(t) for t in titles]
    for t in titles:
        assert norm(t) in rendered


def test_scenarios(source: str, rendered: str) -> None:
    found = re.findall(r"^### Scenario: (.+)\n+\*\*Solution:\*\* (.+)$", source, re.M)
    assert len(found) == 4
    assert [(norm(s.title), norm(s.solution)) for s in RUNBOOK.scenarios] == [
        (norm(t), norm(sol)) for t, sol in found
    ]
    for title, solution in found:
        assert norm(f"Scenario: {title}") in rendered
        assert norm(solution) in rendered
    assert RUNBOOK.scenarios[-1].methods == ("pitr",)


def test_drill(source: str, rendered: str) -> None:
    body = after_label(sections(source)["Testing Rollback Procedures"], "Quarterly Drill")
    steps = re.findall(r"^\d+\. (.+)$", body, re.M)
    assert len(steps) == 5
    assert [norm(s) for s in RUNBOOK.drill] == [norm(s) for s in steps]
    for n, s in enumerate(steps, start=1):
        assert norm(f"{n}. {s}") in rendered


def test_important_note_and_audit_format(source: str, rendered: str) -> None:
    important = re.search(r"\*\*Important:\*\* (.+)", source).group(1)
    assert norm(RUNBOOK.important) == norm(important)
    assert norm(important) in rendered
    line = RUNBOOK.audit_log_format.format(
        timestamp="2025-01-15T10:30:00Z", event="started", name="0007_add_users"
    )
    assert line == "2025-01-15T10:30:00Z - Migration started: 0007_add_users"
    # The runbook's echo line writes exactly this shape.
    assert "- Migration started: $MIGRATION_NAME" in source
    assert norm(RUNBOOK.audit_log_format) in rendered


def test_rendered_markdown_structure() -> None:
    md = render_markdown()
    assert md.startswith("# Database Rollback Procedures\n")
    assert md.count("```") % 2 == 0
    assert md.count("- [ ] ") == 14
    assert "### For AWS RDS:" in md and "### For Google Cloud SQL:" in md
    assert "**Data at risk:** The database is overwritten" in md


# ---- walking the tree --------------------------------------------------------------------


def test_walk_valid_paths() -> None:
    root = RUNBOOK.walk([])
    assert isinstance(root, DecisionNode) and root.id == "environment"
    node = RUNBOOK.walk(["production"])
    assert isinstance(node, DecisionNode) and node.id == "production_problem"
    leaf = RUNBOOK.walk(["production", "data_corruption"])
    assert isinstance(leaf, Choice)
    assert leaf.methods[0] == "pitr"
    assert leaf.summary == "PITR restore (Point-in-Time Recovery)"
    assert leaf.label == "Data corruption?"
    dev = RUNBOOK.walk(("development",))
    assert isinstance(dev, Choice) and dev.summary == "Drop database, re-run from scratch"


def test_walk_invalid_answer_lists_the_choices() -> None:
    with pytest.raises(RollbotError) as exc:
        RUNBOOK.walk(["prod"])
    message = str(exc.value)
    assert "'prod'" in message
    assert "development, staging, production" in message
    assert "\n" not in message
    with pytest.raises(RollbotError, match="data_corruption, schema_only, app_broken"):
        RUNBOOK.walk(["production", "staging"])
    with pytest.raises(RollbotError, match="already ended"):
        RUNBOOK.walk(["staging", "data_corruption"])


def test_lookups_raise_not_found() -> None:
    with pytest.raises(NotFoundError, match="pitr"):
        RUNBOOK.method("rollback_everything")
    with pytest.raises(NotFoundError, match="environment"):
        RUNBOOK.node("nowhere")


def test_leaves_cover_every_leaf_and_walk_back() -> None:
    leaves = RUNBOOK.leaves()
    leaf_choices = [c for n in RUNBOOK.nodes.values() for c in n.choices if c.next_node is None]
    assert len(leaves) == len(leaf_choices) == 5
    for path, choice in leaves:
        assert RUNBOOK.walk(path) is choice
        for m in choice.methods:
            RUNBOOK.method(m)


# ---- immutability and consistency -------------------------------------------------------


def test_runbook_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RUNBOOK.root = "production_problem"  # type: ignore[misc]
    with pytest.raises(TypeError):
        RUNBOOK.methods["pitr"] = RUNBOOK.methods["forward_fix"]  # type: ignore[index]
    with pytest.raises(TypeError):
        RUNBOOK.nodes["x"] = RUNBOOK.node("environment")  # type: ignore[index]
    assert isinstance(RUNBOOK.before_checklist, tuple)
    assert all(isinstance(m.steps, tuple) for m in RUNBOOK.methods.values())


def test_inconsistent_data_is_refused_at_construction() -> None:
    env = RUNBOOK.node("environment")
    broken = dataclasses.replace(
        env, choices=(*env.choices[:2], Choice("production", "In Production", "missing", ()))
    )
    with pytest.raises(ValueError, match="unknown node 'missing'"):
        dataclasses.replace(RUNBOOK, nodes={**RUNBOOK.nodes, "environment": broken})
    pitr = dataclasses.replace(RUNBOOK.method("pitr"), data_loss="")
    with pytest.raises(ValueError, match="does not say what may be lost"):
        dataclasses.replace(RUNBOOK, methods={**RUNBOOK.methods, "pitr": pitr})
    assert isinstance(dataclasses.replace(RUNBOOK), Runbook)
