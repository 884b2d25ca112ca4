"""The schema as it was BEFORE a migration, from a drizzle snapshot or a live catalog.

Reversing ``DROP COLUMN``, ``ALTER COLUMN ... TYPE``, ``DROP TABLE`` or a dropped
constraint needs the old definition, which the migration's SQL does not carry.
Two sources give it: drizzle-kit's ``meta/NNNN_snapshot.json`` of the previous
entry (some projects keep only the last few), or the catalog of a database that
has not run the migration yet (:func:`providers.postgres.catalog.describe_schema`).
Both become one small :class:`OldSchema`, with every definition as SQL text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from providers.drizzle.journal import Journal, JournalEntry
from providers.postgres.catalog import SchemaDescription


def qi(name: str) -> str:
    """Quote an identifier the way drizzle-kit writes it."""
    return '"' + name.replace('"', '""') + '"'


def qname(schema: str, name: str) -> str:
    return f"{qi(schema)}.{qi(name)}"


@dataclass(frozen=True)
class OldColumn:
    name: str
    type: str
    not_null: bool
    default: str | None = None
    identity: str = ""  # "", "ALWAYS" or "BY DEFAULT"

    def definition(self, *, not_null: bool | None = None) -> str:
        text = f"{qi(self.name)} {self.type}"
        if self.default is not None:
            text += f" DEFAULT {self.default}"
        if self.identity:
            text += f" GENERATED {self.identity} AS IDENTITY"
        if self.not_null if not_null is None else not_null:
            text += " NOT NULL"
        return text


@dataclass
class OldTable:
    schema: str
    name: str
    columns: dict[str, OldColumn] = field(default_factory=dict)
    constraints: dict[str, str] = field(default_factory=dict)  # name -> constraint definition
    indexes: dict[str, str] = field(default_factory=dict)  # name -> full CREATE INDEX statement

    @property
    def qualified(self) -> str:
        return qname(self.schema, self.name)

    def add_constraint_sql(self, name: str) -> str:
        return f"ALTER TABLE {self.qualified} ADD CONSTRAINT {qi(name)} {self.constraints[name]};"

    def mentions(self, definition: str, column: str) -> bool:
        """Whether a constraint/index definition names ``column`` (quoted or bare)."""
        pattern = rf'"{re.escape(column)}"|(?<![\w"]){re.escape(column)}(?![\w"])'
        return re.search(pattern, definition) is not None


@dataclass
class OldSchema:
    """Tables by ``(schema, name)`` and enums by ``(schema, name)``; ``source`` names the origin."""

    source: str
    tables: dict[tuple[str, str], OldTable] = field(default_factory=dict)
    enums: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def table(self, schema: str, name: str) -> OldTable | None:
        return self.tables.get((schema, name))


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _column_type(col: dict) -> str:
    typ = str(col["type"])
    schema = col.get("typeSchema")
    if schema:  # an enum
        return qname(schema, typ)
    return typ


def _index_sql(schema: str, table: str, idx: dict) -> str:
    parts = []
    for c in idx.get("columns", []):
        if isinstance(c, str):  # drizzle v5 snapshots list plain names
            parts.append(qi(c))
            continue
        expr = c["expression"] if c.get("isExpression") else qi(c["expression"])
        if c.get("opclass"):
            expr += f" {c['opclass']}"
        if c.get("asc") is False:
            expr += " DESC"
        if c.get("nulls") == "first" and c.get("asc", True) is not False:
            expr += " NULLS FIRST"
        parts.append(expr)
    text = "CREATE UNIQUE INDEX" if idx.get("isUnique") else "CREATE INDEX"
    text += f" {qi(idx['name'])} ON {qname(schema, table)} USING {idx.get('method') or 'btree'} ({','.join(parts)})"
    if idx.get("where"):
        text += f" WHERE {idx['where']}"
    return text + ";"


def from_snapshot(data: dict, source: str = "snapshot") -> OldSchema:
    """Build the model from a drizzle-kit pg snapshot (versions 5 to 7)."""
    model = OldSchema(source)
    for key, t in (data.get("tables") or {}).items():
        schema = t.get("schema") or (key.split(".", 1)[0] if "." in key else "public")
        name = t["name"]
        table = OldTable(schema, name)
        pk_cols = []
        for c in t.get("columns", {}).values():
            default = c.get("default")
            identity = c.get("identity") or {}
            table.columns[c["name"]] = OldColumn(
                c["name"],
                _column_type(c),
                bool(c.get("notNull")) or bool(c.get("primaryKey")),
                None if default is None else _default_text(default),
                {"always": "ALWAYS", "byDefault": "BY DEFAULT"}.get(identity.get("type"), ""),
            )
            if c.get("primaryKey"):
                pk_cols.append(c["name"])
            if c.get("isUnique"):
                uname = c.get("uniqueName") or f"{name}_{c['name']}_unique"
                nnd = " NULLS NOT DISTINCT" if c.get("nullsNotDistinct") else ""
                table.constraints[uname] = f"UNIQUE{nnd} ({qi(c['name'])})"
        if pk_cols:
            table.constraints[f"{name}_pkey"] = f"PRIMARY KEY ({','.join(map(qi, pk_cols))})"
        for pk in (t.get("compositePrimaryKeys") or {}).values():
            table.constraints[pk["name"]] = f"PRIMARY KEY ({','.join(map(qi, pk['columns']))})"
        for fk in (t.get("foreignKeys") or {}).values():
            target = qname(fk.get("schemaTo") or "public", fk["tableTo"])
            table.constraints[fk["name"]] = (
                f"FOREIGN KEY ({','.join(map(qi, fk['columnsFrom']))}) REFERENCES {target}"
                f"({','.join(map(qi, fk['columnsTo']))})"
                f" ON DELETE {fk.get('onDelete') or 'no action'} ON UPDATE {fk.get('onUpdate') or 'no action'}"
            )
        for uq in (t.get("uniqueConstraints") or {}).values():
            nnd = " NULLS NOT DISTINCT" if uq.get("nullsNotDistinct") else ""
            table.constraints[uq["name"]] = f"UNIQUE{nnd} ({','.join(map(qi, uq['columns']))})"
        for ck in (t.get("checkConstraints") or {}).values():
            table.constraints[ck["name"]] = f"CHECK ({ck['value']})"
        for idx in (t.get("indexes") or {}).values():
            table.indexes[idx["name"]] = _index_sql(schema, name, idx)
        model.tables[(schema, name)] = table
    for key, e in (data.get("enums") or {}).items():
        schema = e.get("schema") or (key.split(".", 1)[0] if "." in key else "public")
        model.enums[(schema, e["name"])] = tuple(e.get("values") or ())
    return model


_OWNED_SEQUENCE = re.compile(r"^nextval\('[^']+'::regclass\)$")
_SERIALS = {"integer": "serial", "bigint": "bigserial", "smallint": "smallserial"}


def from_catalog(desc: SchemaDescription, source: str = "live catalog") -> OldSchema:
    """Build the model from a catalog description (a database without the migration)."""
    model = OldSchema(source)
    for t in desc.tables.values():
        table = OldTable(t.schema, t.name)
        for c in t.columns.values():
            typ, default = c.type, c.default
            # A serial's sequence is dropped with its column: re-adding it as serial re-creates both.
            if default and _OWNED_SEQUENCE.match(default) and typ in _SERIALS:
                typ, default = _SERIALS[typ], None
            table.columns[c.name] = OldColumn(c.name, typ, not c.nullable, default, c.identity)
        table.constraints.update(t.constraints)
        table.indexes.update({n: d + ";" for n, d in t.indexes.items() if n not in t.constraints})
        model.tables[(t.schema, t.name)] = table
    for key, values in desc.enums.items():
        schema, _, name = key.rpartition(".")
        model.enums[(schema or "public", name.strip('"'))] = tuple(values)
    return model


def snapshot_path(journal: Journal, entry: JournalEntry) -> Path:
    """``meta/NNNN_snapshot.json`` written together with ``entry`` (drizzle numbers by idx)."""
    return journal.folder / "meta" / f"{entry.idx:04d}_snapshot.json"


def previous_snapshot(journal: Journal, entry: JournalEntry) -> OldSchema | None:
    """The snapshot of the state before ``entry`` (that of the entry before it), if kept."""
    position = journal.entries.index(entry)
    if position == 0:
        return OldSchema("empty database (first migration)")
    path = snapshot_path(journal, journal.entries[position - 1])
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return from_snapshot(data, source=f"meta/{path.name}")
