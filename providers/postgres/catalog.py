"""A comparable description of a database schema, read from the system catalogs.

Why: the drill must prove "the schema equals the pre-migration schema" after each
rollback method, and forward-fix tests must prove a reverse migration undid its
migration. Both need a structural comparison that ignores what does not matter
(column order, OIDs, sequence positions) and names what does, in words a person
reads: ``column users.new_column only in after``.

Definitions come from PostgreSQL's own deparsers (``format_type``,
``pg_get_expr``, ``pg_get_constraintdef``, ``pg_get_indexdef``,
``pg_get_viewdef``, ``pg_get_triggerdef``, ``pg_get_functiondef``), so equal text means equal objects.
drizzle's tracking schema is excluded by default: it changes with every
migration and is compared separately (see ``providers.postgres.verify``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import psycopg

DEFAULT_EXCLUDED_SCHEMAS = ("drizzle",)
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None = None
    identity: str = ""  # "", "ALWAYS" or "BY DEFAULT"
    generated: str | None = None  # expression of a stored generated column
    collation: str | None = None


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    kind: str  # "table" or "partitioned table"
    columns: Mapping[str, Column]
    constraints: Mapping[str, str]  # name -> pg_get_constraintdef
    indexes: Mapping[str, str]  # name -> pg_get_indexdef
    triggers: Mapping[str, str]  # name -> pg_get_triggerdef


@dataclass(frozen=True)
class Sequence:
    data_type: str
    increment: int
    min_value: int
    max_value: int
    cycle: bool
    owned_by: str | None = None


@dataclass(frozen=True)
class SchemaDescription:
    """Everything structural about some schemas; ``==`` means structurally equal."""

    schemas: tuple[str, ...]
    tables: Mapping[str, Table] = field(default_factory=dict)
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sequences: Mapping[str, Sequence] = field(default_factory=dict)
    views: Mapping[str, str] = field(default_factory=dict)  # name -> kind + definition
    functions: Mapping[str, str] = field(default_factory=dict)  # name(args) -> definition

    def table(self, name: str) -> Table:
        return self.tables[name]


def _display(schema: str, name: str) -> str:
    """``users`` for public objects, ``audit.events`` otherwise (what people write)."""
    return name if schema == "public" else f"{schema}.{name}"


def _schemas_to_read(
    conn: psycopg.Connection, schemas: Iterable[str] | None, exclude: Iterable[str]
) -> tuple[str, ...]:
    excluded = set(exclude)
    if schemas is not None:
        return tuple(s for s in schemas if s not in excluded)
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) "
        "AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
        "ORDER BY nspname",
        (list(_SYSTEM_SCHEMAS),),
    ).fetchall()
    return tuple(r[0] for r in rows if r[0] not in excluded)


def describe_schema(
    conn: psycopg.Connection,
    schemas: Iterable[str] | None = ("public",),
    *,
    exclude: Iterable[str] = DEFAULT_EXCLUDED_SCHEMAS,
) -> SchemaDescription:
    """Read tables, columns, constraints, indexes, triggers, enums, sequences, views, functions.

    ``schemas=None`` reads every non-system schema. Schemas in ``exclude``
    (drizzle's tracking schema by default) are never read.
    """
    names = _schemas_to_read(conn, schemas, exclude)
    ns = list(names)

    table_rows = conn.execute(
        """
        SELECT c.oid, n.nspname, c.relname, c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
        ORDER BY n.nspname, c.relname
        """,
        (ns,),
    ).fetchall()
    oids = [r[0] for r in table_rows]

    columns: dict[int, dict[str, Column]] = {oid: {} for oid in oids}
    for oid, name, typ, notnull, default, identity, generated, collation in conn.execute(
        """
        SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
               a.attidentity,
               CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
               CASE WHEN a.attcollation <> t.typcollation THEN co.collname END
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (oids,),
    ):
        columns[oid][name] = Column(
            name=name,
            type=typ,
            nullable=not notnull,
            default=default,
            identity={"a": "ALWAYS", "d": "BY DEFAULT"}.get(identity, ""),
            generated=generated,
            collation=collation,
        )

    constraints: dict[int, dict[str, str]] = {oid: {} for oid in oids}
    for oid, name, definition in conn.execute(
        "SELECT conrelid, conname, pg_get_constraintdef(oid, true) FROM pg_constraint "
        "WHERE conrelid = ANY(%s)",
        (oids,),
    ):
        constraints[oid][name] = definition

    indexes: dict[int, dict[str, str]] = {oid: {} for oid in oids}
    for oid, name, definition in conn.execute(
        "SELECT i.indrelid, c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ANY(%s)",
        (oids,),
    ):
        indexes[oid][name] = definition

    triggers: dict[int, dict[str, str]] = {oid: {} for oid in oids}
    for oid, name, definition in conn.execute(
        "SELECT tgrelid, tgname, pg_get_triggerdef(oid, true) FROM pg_trigger "
        "WHERE tgrelid = ANY(%s) AND NOT tgisinternal",
        (oids,),
    ):
        triggers[oid][name] = definition

    tables = {
        _display(schema, name): Table(
            schema=schema,
            name=name,
            kind="partitioned table" if kind == "p" else "table",
            columns=columns[oid],
            constraints=constraints[oid],
            indexes=indexes[oid],
            triggers=triggers[oid],
        )
        for oid, schema, name, kind in table_rows
    }

    enums: dict[str, tuple[str, ...]] = {}
    for schema, name, labels in conn.execute(
        """
        SELECT n.nspname, t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE n.nspname = ANY(%s) GROUP BY n.nspname, t.typname
        """,
        (ns,),
    ):
        enums[_display(schema, name)] = tuple(labels)

    sequences: dict[str, Sequence] = {}
    for schema, name, typ, inc, lo, hi, cycle, owner_schema, owner_table, owner_col in conn.execute(
        """
        SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin,
               s.seqmax, s.seqcycle, tn.nspname, tc.relname, a.attname
        FROM pg_sequence s
        JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
             AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LEFT JOIN pg_class tc ON tc.oid = d.refobjid
        LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE n.nspname = ANY(%s)
        """,
        (ns,),
    ):
        owned = f"{_display(owner_schema, owner_table)}.{owner_col}" if owner_table else None
        sequences[_display(schema, name)] = Sequence(typ, inc, lo, hi, cycle, owned)

    views: dict[str, str] = {}
    for schema, name, kind, definition in conn.execute(
        """
        SELECT n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid, true)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(%s)
        """,
        (ns,),
    ):
        label = "materialized view" if kind == "m" else "view"
        views[_display(schema, name)] = f"{label}: {definition.strip()}"

    functions: dict[str, str] = {}
    for schema, signature, definition in conn.execute(
        """
        SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%s) AND p.prokind IN ('f', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'e')
        """,
        (ns,),
    ):
        functions[_display(schema, signature)] = definition.strip()

    return SchemaDescription(names, tables, enums, sequences, views, functions)


def _only_in(
    kind: str, a: Mapping[str, object], b: Mapping[str, object], labels: tuple[str, str]
) -> Iterator[str]:
    for name in sorted(a.keys() - b.keys()):
        yield f"{kind} {name} only in {labels[0]}"
    for name in sorted(b.keys() - a.keys()):
        yield f"{kind} {name} only in {labels[1]}"


def _changed(what: str, a: object, b: object, labels: tuple[str, str]) -> str:
    return f"{what} differs ({labels[0]}: {a}, {labels[1]}: {b})"


def _diff_columns(table: str, a: Column, b: Column, labels: tuple[str, str]) -> list[str]:
    where = f"{table}.{a.name}"
    out: list[str] = []
    if a.type != b.type:
        out.append(f"{where}: " + _changed("type", a.type, b.type, labels))
    if a.nullable != b.nullable:

        def show(n: bool) -> str:
            return "NULL" if n else "NOT NULL"

        out.append(f"{where}: " + _changed("nullable", show(a.nullable), show(b.nullable), labels))
    if a.default != b.default:
        out.append(f"{where}: " + _changed("default", a.default, b.default, labels))
    if a.identity != b.identity:
        out.append(
            f"{where}: " + _changed("identity", a.identity or "none", b.identity or "none", labels)
        )
    if a.generated != b.generated:
        out.append(f"{where}: " + _changed("generated", a.generated, b.generated, labels))
    if a.collation != b.collation:
        out.append(f"{where}: " + _changed("collation", a.collation, b.collation, labels))
    return out


def _diff_definitions(
    kind: str, owner: str, a: Mapping[str, str], b: Mapping[str, str], labels: tuple[str, str]
) -> list[str]:
    prefix = f"{kind} " if not owner else f"{kind} {owner}."
    out = [line.replace(f"{kind} ", prefix, 1) for line in _only_in(kind, a, b, labels)]
    for name in sorted(a.keys() & b.keys()):
        if a[name] != b[name]:
            out.append(f"{prefix}{name}: " + _changed("definition", a[name], b[name], labels))
    return out


def diff_schemas(
    a: SchemaDescription, b: SchemaDescription, labels: tuple[str, str] = ("before", "after")
) -> list[str]:
    """Human-readable differences from ``a`` to ``b``; empty when structurally equal."""
    out = list(_only_in("table", a.tables, b.tables, labels))
    for name in sorted(a.tables.keys() & b.tables.keys()):
        ta, tb = a.tables[name], b.tables[name]
        if ta.kind != tb.kind:
            out.append(f"table {name}: " + _changed("kind", ta.kind, tb.kind, labels))
        out += [
            line.replace("column ", f"column {name}.", 1)
            for line in _only_in("column", ta.columns, tb.columns, labels)
        ]
        for col in sorted(ta.columns.keys() & tb.columns.keys()):
            out += _diff_columns(name, ta.columns[col], tb.columns[col], labels)
        out += _diff_definitions("constraint", name, ta.constraints, tb.constraints, labels)
        out += _diff_definitions("index", name, ta.indexes, tb.indexes, labels)
        out += _diff_definitions("trigger", name, ta.triggers, tb.triggers, labels)
    out += list(_only_in("enum", a.enums, b.enums, labels))
    for name in sorted(a.enums.keys() & b.enums.keys()):
        if a.enums[name] != b.enums[name]:
            out.append(
                f"enum {name}: "
                + _changed("labels", list(a.enums[name]), list(b.enums[name]), labels)
            )
    out += list(_only_in("sequence", a.sequences, b.sequences, labels))
    for name in sorted(a.sequences.keys() & b.sequences.keys()):
        sa, sb = a.sequences[name], b.sequences[name]
        for attr in ("data_type", "increment", "min_value", "max_value", "cycle", "owned_by"):
            if getattr(sa, attr) != getattr(sb, attr):
                out.append(
                    f"sequence {name}: "
                    + _changed(attr.replace("_", " "), getattr(sa, attr), getattr(sb, attr), labels)
                )
    out += _diff_definitions("view", "", a.views, b.views, labels)
    out += _diff_definitions("function", "", a.functions, b.functions, labels)
    return out
