"""Draft the reverse of a drizzle migration from PostgreSQL's own parse tree (pglast).

Why pglast and not a generic SQL parser: it is PostgreSQL's real grammar, so
types, defaults and identifiers are read exactly as the server reads them.
The draft is a proposal for a person to review, never run blindly:

* simple inverses are mechanical (``ADD COLUMN`` -> ``DROP COLUMN``, renames back, ...);
* inverses that need the old definition (``DROP COLUMN``, ``ALTER COLUMN ... TYPE``,
  ``DROP TABLE``, a dropped constraint/index/type, a changed default) come from
  the previous drizzle snapshot or a catalog of the database before the
  migration (:mod:`providers.drizzle.snapshot_model`);
* where data cannot come back, a loud ``data_loss`` note says so;
* what cannot be reversed (``DO`` blocks, backfills, functions, ...) is listed in
  ``needs_person`` with file and statement position, never skipped.

Statements are reversed in reverse order. A migration that ``COMMIT;``s to run
``CONCURRENTLY`` work keeps that shape: the draft commits before its first
statement that cannot run inside a transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType, DropBehavior, ObjectType, TransactionStmtKind
from pglast.parser import ParseError
from pglast.stream import RawStream

from bot.errors import ProviderError
from providers.drizzle.journal import BREAKPOINT, Journal, JournalEntry
from providers.drizzle.snapshot_model import OldSchema, OldTable, previous_snapshot, qi, qname

DATA_GONE = (
    "the data of column {col} is gone; a forward-fix re-creates the column empty; "
    "use point-in-time restore to get the data"
)
TABLE_GONE = (
    "the data of table {table} is gone; a forward-fix re-creates the table empty; "
    "use point-in-time restore to get the data"
)

# drizzle-kit (before 0.24) wraps ADD CONSTRAINT / CREATE TYPE in
# ``DO $$ BEGIN ... EXCEPTION WHEN duplicate_object THEN null; END $$``; teams copy
# the idea for other "already exists / does not exist" errors. One statement
# inside, nothing but ``null`` in the handler: the inner statement is reversible,
# unless it was the no-op (checked against the old schema where it is known).
_GUARD_CONDITIONS = r"(?:duplicate_object|duplicate_column|duplicate_table|undefined_object|undefined_column|undefined_table)"
_DUPLICATE_WRAPPER = re.compile(
    r"^\s*BEGIN\s+(?P<inner>[^;]+?);?\s*EXCEPTION\s+WHEN\s+"
    rf"{_GUARD_CONDITIONS}(?:\s+OR\s+{_GUARD_CONDITIONS})*\s+THEN\s+null;\s*END;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


NO_OLD = (
    "old definition unknown (no previous drizzle snapshot and no catalog of the "
    "database before the migration)"
)


class ReverseParseError(ProviderError):
    """A migration statement PostgreSQL's parser rejects (names file, statement, line)."""


@dataclass(frozen=True)
class Statement:
    """One parsed statement of a migration file, with where it is."""

    file: str
    position: int  # 1-based, counting every statement in the file
    line: int
    text: str
    node: ast.Node

    @property
    def where(self) -> str:
        return f"{self.file} statement {self.position} (line {self.line})"


@dataclass(frozen=True)
class NeedsPerson:
    file: str
    position: int
    line: int
    statement: str
    reason: str

    def __str__(self) -> str:
        first = " ".join(self.statement.split())
        if len(first) > 120:
            first = first[:117] + "..."
        return f"{self.file} statement {self.position} (line {self.line}): {self.reason}: {first}"


@dataclass
class ReverseDraft:
    """The drafted reverse of one migration, with everything a reviewer must know."""

    source: str
    statements: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    needs_person: list[NeedsPerson] = field(default_factory=list)
    data_loss: list[str] = field(default_factory=list)
    old_definitions_from: str | None = None

    @property
    def sql(self) -> str:
        return ("\n" + BREAKPOINT + "\n").join(self.statements) + ("\n" if self.statements else "")

    def render(self) -> str:
        """Plain-text review: SQL, then loud notes (used by the CLI and the Slack thread)."""
        lines = [f"-- reverse of {self.source}"]
        if self.old_definitions_from:
            lines.append(f"-- old definitions from {self.old_definitions_from}")
        lines.append(self.sql.rstrip() or "-- (nothing to reverse mechanically)")
        for note in self.data_loss:
            lines.append(f"DATA LOSS: {note}")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        for n in self.needs_person:
            lines.append(f"NEEDS A PERSON: {n}")
        return "\n".join(lines)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse_migration(text: str, file: str) -> list[Statement]:
    """Split on breakpoints, parse each chunk; a syntax error names the file, statement, line."""
    out: list[Statement] = []
    offset = 0
    for chunk in text.split(BREAKPOINT):
        start = offset
        offset += len(chunk) + len(BREAKPOINT)
        if not chunk.strip():
            continue
        first_line = _line_of(text, start + (len(chunk) - len(chunk.lstrip())))
        try:
            raws = parse_sql(chunk)
        except ParseError as exc:
            raise ReverseParseError(
                f"{file} statement {len(out) + 1} (line {first_line}): cannot parse: {exc.args[0]}"
            ) from None
        for raw in raws:
            loc = raw.stmt_location or 0  # pglast reports character offsets
            piece = chunk[loc : loc + raw.stmt_len] if raw.stmt_len else chunk[loc:]
            lead = len(piece) - len(piece.lstrip())
            line = _line_of(text, start + loc + lead)
            piece = piece.strip()
            out.append(Statement(file, len(out) + 1, line, piece, raw.stmt))
    return out


def _name(rv: ast.RangeVar) -> tuple[str, str]:
    return rv.schemaname or "public", rv.relname


def _q(rv: ast.RangeVar) -> str:
    """Schema-qualify only when the original did (drizzle style)."""
    return qname(rv.schemaname, rv.relname) if rv.schemaname else qi(rv.relname)


def _names(node_list) -> list[str]:
    return [n.sval for n in node_list]


def _deparse(node: ast.Node) -> str:
    return RawStream()(node)


def _concurrent_drop_index(schema: str | None, name: str, concurrently: bool) -> str:
    target = qname(schema, name) if schema else qi(name)
    return f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}{target};"


@dataclass
class _Out:
    """Reverse statements of one original statement, in execution order."""

    sql: list[str] = field(default_factory=list)
    outside_transaction: bool = False


class _Drafter:
    def __init__(self, statements: list[Statement], old: OldSchema | None, draft: ReverseDraft):
        self.statements = statements
        self.old = old
        self.draft = draft
        self.recreated: set[str] = set()
        self.explicitly_dropped = self._explicit_drops()
        self.guarded = False  # the statement being reversed sat in an exception-guard DO block

    # ---- bookkeeping ---------------------------------------------------------
    def _explicit_drops(self) -> set[str]:
        names: set[str] = set()
        for st in self.statements:
            node = self._unwrap(st.node) or st.node
            if isinstance(node, ast.AlterTableStmt):
                for cmd in node.cmds:
                    if cmd.subtype == AlterTableType.AT_DropConstraint:
                        names.add(cmd.name)
                    elif cmd.subtype == AlterTableType.AT_DropColumn:
                        names.add(f"{node.relation.relname}.{cmd.name}")
            elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
                for obj in node.objects:
                    names.add(_names(obj)[-1])
        return names

    def needs(self, st: Statement, reason: str) -> _Out:
        self.draft.needs_person.append(NeedsPerson(st.file, st.position, st.line, st.text, reason))
        return _Out()

    def old_table(self, schema: str, name: str) -> OldTable | None:
        return self.old.table(schema, name) if self.old else None

    def no_old(self) -> str:
        return NO_OLD

    # ---- dispatch --------------------------------------------------------------
    @staticmethod
    def _unwrap(node: ast.Node) -> ast.Node | None:
        """The inner statement of drizzle's ``DO $$ BEGIN ... EXCEPTION WHEN duplicate_object`` wrapper."""
        if not isinstance(node, ast.DoStmt):
            return None
        body = next((a.arg.sval for a in node.args if a.defname == "as"), None)
        match = _DUPLICATE_WRAPPER.match(body or "")
        if not match:
            return None
        try:
            inner = parse_sql(match.group("inner"))
        except ParseError:
            return None
        return inner[0].stmt if len(inner) == 1 else None

    def reverse(self, st: Statement) -> _Out:
        node = st.node
        self.guarded = False
        if isinstance(node, ast.DoStmt):
            inner = self._unwrap(node)
            if inner is None:
                return self.needs(st, "a DO block runs procedural code rollbot cannot reverse")
            node = inner
            self.guarded = True
        handler = {
            ast.AlterTableStmt: self.alter_table,
            ast.CreateStmt: self.create_table,
            ast.IndexStmt: self.create_index,
            ast.DropStmt: self.drop,
            ast.CreateEnumStmt: self.create_enum,
            ast.AlterEnumStmt: self.alter_enum,
            ast.RenameStmt: self.rename,
            ast.CreateSchemaStmt: self.create_schema,
            ast.CreateSeqStmt: self.create_sequence,
        }.get(type(node))
        if handler is None:
            kind = type(node).__name__.removesuffix("Stmt")
            reasons = {
                "Update": "an UPDATE backfill changes data; the old values are not in the migration",
                "Insert": "an INSERT adds rows; which ones to remove is a decision for a person",
                "Delete": "a DELETE removed rows; only a restore brings them back",
                "CreateFunction": "a function or procedure; its previous version is not known",
                "CreateTrig": "a trigger; its previous version is not known",
                "Select": "a SELECT may call functions with side effects",
            }
            return self.needs(st, reasons.get(kind, f"rollbot does not reverse {kind} statements"))
        return handler(st, node)

    # ---- ALTER TABLE -------------------------------------------------------------
    def alter_table(self, st: Statement, node: ast.AlterTableStmt) -> _Out:
        if node.objtype != ObjectType.OBJECT_TABLE:
            return self.needs(
                st, f"ALTER {node.objtype.name.removeprefix('OBJECT_')} is not reversed"
            )
        out = _Out()
        for cmd in reversed(node.cmds):
            one = self.alter_cmd(st, node.relation, cmd)
            if one is None:
                return _Out()  # already reported as needing a person
            out.sql.extend(one)
        return out

    def alter_cmd(
        self, st: Statement, rv: ast.RangeVar, cmd: ast.AlterTableCmd
    ) -> list[str] | None:
        t = _q(rv)
        schema, table = _name(rv)
        sub = cmd.subtype
        col = cmd.name
        old = self.old_table(schema, table)
        if sub == AlterTableType.AT_AddColumn:
            colname = cmd.def_.colname
            if (
                (cmd.missing_ok or self.guarded)
                and old is not None
                and colname in old.columns
                and f"{table}.{colname}" not in self.explicitly_dropped
            ):
                self.draft.warnings.append(
                    f"{st.where}: column {table}.{colname} existed before; the ADD was a no-op"
                )
                return []
            self.draft.data_loss.append(
                f"dropping {table}.{colname} discards every value written to it since the migration"
            )
            return [f"ALTER TABLE {t} DROP COLUMN {qi(colname)};"]
        if sub == AlterTableType.AT_DropColumn:
            return self.readd_column(st, schema, table, t, col)
        if sub == AlterTableType.AT_SetNotNull:
            return [f"ALTER TABLE {t} ALTER COLUMN {qi(col)} DROP NOT NULL;"]
        if sub == AlterTableType.AT_DropNotNull:
            self.draft.warnings.append(
                f"SET NOT NULL on {table}.{col} fails if NULLs were written since the migration"
            )
            return [f"ALTER TABLE {t} ALTER COLUMN {qi(col)} SET NOT NULL;"]
        if sub == AlterTableType.AT_ColumnDefault:
            old = self.old_table(schema, table)
            if old is None or col not in old.columns:
                self.needs(
                    st, f"the previous default of {table}.{col} is unknown: " + self.no_old()
                )
                return None
            previous = old.columns[col].default
            if previous is None:
                return [f"ALTER TABLE {t} ALTER COLUMN {qi(col)} DROP DEFAULT;"]
            return [f"ALTER TABLE {t} ALTER COLUMN {qi(col)} SET DEFAULT {previous};"]
        if sub == AlterTableType.AT_AlterColumnType:
            old = self.old_table(schema, table)
            if old is None or col not in old.columns:
                self.needs(st, f"the previous type of {table}.{col} is unknown: " + self.no_old())
                return None
            previous = old.columns[col]
            self.draft.warnings.append(
                f"{table}.{col} goes back to {previous.type}: values that do not fit fail the "
                "migration, and precision lost by the change does not come back"
            )
            stmts = [
                f"ALTER TABLE {t} ALTER COLUMN {qi(col)} SET DATA TYPE {previous.type} "
                f"USING {qi(col)}::{previous.type};"
            ]
            return stmts
        if sub == AlterTableType.AT_AddConstraint:
            con: ast.Constraint = cmd.def_
            name = con.conname
            if not name and con.contype == ConstrType.CONSTR_PRIMARY:
                name = f"{table}_pkey"
            if not name:
                self.needs(st, "an unnamed constraint: PostgreSQL chose its name; drop it by hand")
                return None
            if (
                self.guarded
                and old is not None
                and name in old.constraints
                and name not in self.explicitly_dropped
            ):
                self.draft.warnings.append(
                    f"{st.where}: constraint {name} existed before; the ADD was a no-op"
                )
                return []
            return [f"ALTER TABLE {t} DROP CONSTRAINT {qi(name)};"]
        if sub == AlterTableType.AT_DropConstraint:
            old = self.old_table(schema, table)
            if old is None:
                self.needs(st, f"the definition of constraint {col} is unknown: " + self.no_old())
                return None
            if col not in old.constraints:
                if cmd.missing_ok or self.guarded:
                    self.draft.warnings.append(
                        f"{st.where}: constraint {col} did not exist before (IF EXISTS); nothing to re-add"
                    )
                    return []
                self.needs(st, f"constraint {col} is not in {self.old.source}")
                return None
            self.recreated.add(col)
            return [old.add_constraint_sql(col)]
        if sub in (AlterTableType.AT_EnableRowSecurity, AlterTableType.AT_DisableRowSecurity):
            flip = "DISABLE" if sub == AlterTableType.AT_EnableRowSecurity else "ENABLE"
            return [f"ALTER TABLE {t} {flip} ROW LEVEL SECURITY;"]
        self.needs(st, f"ALTER TABLE {sub.name.removeprefix('AT_')} is not reversed")
        return None

    def readd_column(
        self, st: Statement, schema: str, table: str, t: str, col: str
    ) -> list[str] | None:
        old = self.old_table(schema, table)
        if old is None or col not in old.columns:
            self.needs(
                st, f"the definition of dropped column {table}.{col} is unknown: " + self.no_old()
            )
            return None
        self.draft.data_loss.append(DATA_GONE.format(col=f"{table}.{col}"))
        return readd_column_sql(
            old, col, self.draft, skip=self.explicitly_dropped | self.recreated, where=st
        )

    # ---- tables, indexes, types ---------------------------------------------------
    def create_table(self, st: Statement, node: ast.CreateStmt) -> _Out:
        table = node.relation.relname
        self.draft.data_loss.append(
            f"dropping table {table} discards every row written to it since the migration"
        )
        return _Out([f"DROP TABLE {_q(node.relation)};"])

    def create_index(self, st: Statement, node: ast.IndexStmt) -> _Out:
        if not node.idxname:
            return self.needs(st, "an unnamed index: PostgreSQL chose its name; drop it by hand")
        if node.if_not_exists and self.old is not None:
            old = self.old_table(*_name(node.relation))
            if old is not None and node.idxname in old.indexes:
                self.draft.warnings.append(
                    f"{st.where}: index {node.idxname} existed before (IF NOT EXISTS); not dropped"
                )
                return _Out()
        schema = node.relation.schemaname
        return _Out(
            [_concurrent_drop_index(schema, node.idxname, bool(node.concurrent))],
            outside_transaction=bool(node.concurrent),
        )

    def drop(self, st: Statement, node: ast.DropStmt) -> _Out:
        kind = node.removeType
        out = _Out()
        for obj in reversed(node.objects):
            if kind == ObjectType.OBJECT_TABLE:
                parts = _names(obj)
                schema, name = (parts[0], parts[1]) if len(parts) == 2 else ("public", parts[0])
                one = self.recreate_table(st, schema, name, node)
            elif kind == ObjectType.OBJECT_INDEX:
                parts = _names(obj)
                one = self.recreate_index(st, parts[-1], node, out)
            elif kind == ObjectType.OBJECT_TYPE:
                parts = _names(obj.names) if isinstance(obj, ast.TypeName) else _names(obj)
                schema, name = (parts[0], parts[1]) if len(parts) == 2 else ("public", parts[-1])
                values = self.old.enums.get((schema, name)) if self.old else None
                if values is None:
                    self.needs(st, f"the definition of type {name} is unknown: " + self.no_old())
                    return _Out()
                labels = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
                one = [f"CREATE TYPE {qname(schema, name)} AS ENUM({labels});"]
            else:
                return self.needs(st, f"DROP {kind.name.removeprefix('OBJECT_')} is not reversed")
            if one is None:
                return _Out()
            out.sql.extend(one)
        return out

    def recreate_table(
        self, st: Statement, schema: str, name: str, node: ast.DropStmt
    ) -> list[str] | None:
        old = self.old_table(schema, name)
        if old is None:
            if node.missing_ok and self.old is not None:
                self.draft.warnings.append(
                    f"{st.where}: table {name} did not exist before (IF EXISTS)"
                )
                return []
            self.needs(st, f"the definition of dropped table {name} is unknown: " + self.no_old())
            return None
        self.draft.data_loss.append(TABLE_GONE.format(table=name))
        cols = [c.definition() for c in old.columns.values()]
        stmts = [f"CREATE TABLE {old.qualified} (\n\t" + ",\n\t".join(cols) + "\n);"]
        for cname in old.constraints:
            if cname not in self.explicitly_dropped:
                stmts.append(old.add_constraint_sql(cname))
                self.recreated.add(cname)
        for iname, definition in old.indexes.items():
            if iname not in self.explicitly_dropped:
                stmts.append(definition)
                self.recreated.add(iname)
        if node.behavior == DropBehavior.DROP_CASCADE and self.old is not None:
            for other in self.old.tables.values():
                if other is old:
                    continue
                for cname, definition in other.constraints.items():
                    if cname not in self.explicitly_dropped and references(
                        definition, schema, name
                    ):
                        stmts.append(other.add_constraint_sql(cname))
                        self.recreated.add(cname)
        return stmts

    def recreate_index(
        self, st: Statement, name: str, node: ast.DropStmt, out: _Out
    ) -> list[str] | None:
        if self.old is None:
            self.needs(st, f"the definition of dropped index {name} is unknown: " + self.no_old())
            return None
        for table in self.old.tables.values():
            if name in table.indexes:
                definition = table.indexes[name]
                if node.concurrent:
                    definition = definition.replace("INDEX", "INDEX CONCURRENTLY", 1)
                    out.outside_transaction = True
                self.recreated.add(name)
                return [definition]
        if node.missing_ok:
            self.draft.warnings.append(f"{st.where}: index {name} did not exist before (IF EXISTS)")
            return []
        self.needs(st, f"index {name} is not in {self.old.source}")
        return None

    def create_enum(self, st: Statement, node: ast.CreateEnumStmt) -> _Out:
        parts = _names(node.typeName)
        target = qname(parts[0], parts[1]) if len(parts) == 2 else qi(parts[0])
        return _Out([f"DROP TYPE {target};"])

    def alter_enum(self, st: Statement, node: ast.AlterEnumStmt) -> _Out:
        parts = _names(node.typeName)
        target = qname(parts[0], parts[1]) if len(parts) == 2 else qi(parts[0])
        if node.oldVal:  # RENAME VALUE
            old = node.oldVal.replace("'", "''")
            new = node.newVal.replace("'", "''")
            return _Out([f"ALTER TYPE {target} RENAME VALUE '{new}' TO '{old}';"])
        schema, name = (parts[0], parts[1]) if len(parts) == 2 else ("public", parts[0])
        values = self.old.enums.get((schema, name)) if self.old else None
        if values is None:
            return self.needs(
                st,
                f"PostgreSQL cannot remove value '{node.newVal}' from enum {name}, and the old "
                "labels are unknown; leaving it is harmless, removing it means re-creating the type",
            )
        if f"enum:{schema}.{name}" in self.recreated:
            return _Out()  # an earlier ADD VALUE's reverse already re-created the whole type
        self.recreated.add(f"enum:{schema}.{name}")
        users = enum_columns(self.old, schema, name)
        if users is None:
            return self.needs(
                st,
                f"enum {name} is used by an array column; re-create the type without "
                f"'{node.newVal}' by hand",
            )
        self.draft.warnings.append(
            f"enum {name} is re-created without its new label(s): this fails if any row holds "
            f"'{node.newVal}'; update those rows first"
        )
        return _Out(recreate_enum_sql(schema, name, values, users))

    def rename(self, st: Statement, node: ast.RenameStmt) -> _Out:
        kind = node.renameType
        if kind == ObjectType.OBJECT_COLUMN:
            return _Out(
                [
                    f"ALTER TABLE {_q(node.relation)} RENAME COLUMN {qi(node.newname)} TO {qi(node.subname)};"
                ]
            )
        if kind == ObjectType.OBJECT_TABLE:
            renamed = (
                qname(node.relation.schemaname, node.newname)
                if node.relation.schemaname
                else qi(node.newname)
            )
            return _Out([f"ALTER TABLE {renamed} RENAME TO {qi(node.relation.relname)};"])
        if kind == ObjectType.OBJECT_TABCONSTRAINT:
            return _Out(
                [
                    f"ALTER TABLE {_q(node.relation)} RENAME CONSTRAINT {qi(node.newname)} TO {qi(node.subname)};"
                ]
            )
        if kind == ObjectType.OBJECT_INDEX:
            schema = node.relation.schemaname
            renamed = qname(schema, node.newname) if schema else qi(node.newname)
            return _Out([f"ALTER INDEX {renamed} RENAME TO {qi(node.relation.relname)};"])
        return self.needs(
            st, f"renaming a {kind.name.removeprefix('OBJECT_').lower()} is not reversed"
        )

    def create_schema(self, st: Statement, node: ast.CreateSchemaStmt) -> _Out:
        if (
            node.if_not_exists
            and self.old is not None
            and any(s == node.schemaname for s, _ in self.old.tables)
        ):
            return _Out()
        return _Out([f"DROP SCHEMA {qi(node.schemaname)};"])

    def create_sequence(self, st: Statement, node: ast.CreateSeqStmt) -> _Out:
        return _Out([f"DROP SEQUENCE {_q(node.sequence)};"])


def _type_key(type_text: str) -> str:
    text = type_text.replace('"', "")
    return text.removeprefix("public.")


def enum_columns(old: OldSchema, schema: str, name: str) -> list[tuple[OldTable, str]] | None:
    """Columns of type ``schema.name`` in the old schema; None if an array column uses it."""
    wanted = {_type_key(qname(schema, name)), _type_key(f"{schema}.{name}")}
    found: list[tuple[OldTable, str]] = []
    for table in old.tables.values():
        for col in table.columns.values():
            key = _type_key(col.type)
            if key in wanted:
                found.append((table, col.name))
            elif key.removesuffix("[]") in wanted:
                return None
    return found


def recreate_enum_sql(
    schema: str, name: str, values: tuple[str, ...], users: list[tuple[OldTable, str]]
) -> list[str]:
    """Drop a label PostgreSQL cannot drop: columns to text, re-create the type, cast back."""
    typ = qname(schema, name)
    labels = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    before: list[str] = []
    after: list[str] = []
    for table, col in users:
        column = table.columns[col]
        target = f"ALTER TABLE {table.qualified} ALTER COLUMN {qi(col)}"
        if column.default is not None:
            before.append(f"{target} DROP DEFAULT;")
        before.append(f"{target} SET DATA TYPE text;")
        after.append(f"{target} SET DATA TYPE {typ} USING {qi(col)}::{typ};")
        if column.default is not None:
            after.append(f"{target} SET DEFAULT {column.default};")
    return [*before, f"DROP TYPE {typ};", f"CREATE TYPE {typ} AS ENUM({labels});", *after]


def references(definition: str, schema: str, table: str) -> bool:
    """Whether a constraint definition is a foreign key to ``schema.table``."""
    target = rf"(?:{re.escape(qi(schema))}\.|{re.escape(schema)}\.)?(?:{re.escape(qi(table))}|{re.escape(table)})\("
    return re.search(r"REFERENCES " + target, definition) is not None


def readd_column_sql(
    old: OldTable,
    col: str,
    draft: ReverseDraft,
    *,
    skip: set[str] | None = None,
    where: Statement | None = None,
) -> list[str]:
    """``ADD COLUMN`` with the old definition, then the constraints and indexes that used it.

    A NOT NULL column without a default cannot be re-added to a table with rows,
    so it comes back nullable and a person decides how to backfill it.
    """
    skip = skip or set()
    column = old.columns[col]
    not_null = column.not_null
    fills_itself = (
        column.default is not None
        or bool(column.identity)
        or column.type.lower() in ("serial", "bigserial", "smallserial", "serial4", "serial8")
    )
    if column.not_null and not fills_itself:
        not_null = False
        reason = (
            f"{old.name}.{col} was NOT NULL without a default: re-added as nullable; "
            f"backfill it, then ALTER TABLE {old.qualified} ALTER COLUMN {qi(col)} SET NOT NULL"
        )
        if where is not None:
            draft.needs_person.append(
                NeedsPerson(where.file, where.position, where.line, where.text, reason)
            )
        else:
            draft.warnings.append(reason)
    stmts = [f"ALTER TABLE {old.qualified} ADD COLUMN {column.definition(not_null=not_null)};"]
    for cname, definition in old.constraints.items():
        if cname not in skip and old.mentions(definition, col):
            stmts.append(old.add_constraint_sql(cname))
            skip.add(cname)
    for iname, definition in old.indexes.items():
        if iname not in skip and old.mentions(definition.split(" USING ", 1)[-1], col):
            stmts.append(definition)
            skip.add(iname)
    return stmts


def draft_statements(
    statements: list[Statement], source: str, old: OldSchema | None
) -> ReverseDraft:
    """Reverse parsed statements (in reverse order), keeping the COMMIT shape."""
    draft = ReverseDraft(source, old_definitions_from=old.source if old else None)
    drafter = _Drafter(statements, old, draft)
    committed_shape = any(
        isinstance(s.node, ast.TransactionStmt)
        and s.node.kind == TransactionStmtKind.TRANS_STMT_COMMIT
        for s in statements
    )
    in_transaction = True
    for st in reversed(statements):
        if isinstance(st.node, ast.TransactionStmt):
            continue  # the shape is rebuilt below, from what the reverse needs
        out = drafter.reverse(st)
        if out.outside_transaction and in_transaction:
            draft.statements.append("COMMIT;")
            in_transaction = False
            draft.warnings.append(
                "this reverse COMMITs mid-way to run CONCURRENTLY index work (like the original): "
                "if a later statement fails, the earlier ones stay applied"
            )
        draft.statements.extend(out.sql)
    if committed_shape and in_transaction and draft.statements:
        draft.warnings.append(
            f"{source} COMMITs mid-way; its reverse has no CONCURRENTLY work and runs in one transaction"
        )
    return draft


def draft_reverse(
    journal: Journal,
    entry: JournalEntry | None = None,
    *,
    before: OldSchema | None = None,
) -> ReverseDraft:
    """Draft the reverse of ``entry`` (default: the newest journal entry).

    Old definitions come from ``before`` (e.g. the catalog of a database that has
    not run the migration) or else the previous drizzle snapshot, if the folder
    still has it.
    """
    entry = entry or journal.newest
    if entry is None:
        raise ProviderError(f"{journal.folder}: the journal has no entries")
    statements = parse_migration(entry.sql, entry.path.name)
    old = before or previous_snapshot(journal, entry)
    draft = draft_statements(statements, entry.path.name, old)
    if old is None and any(n.reason.endswith(NO_OLD) for n in draft.needs_person):
        draft.warnings.append(
            "no previous snapshot in meta/ for this entry; pass --database-url of a database "
            "without the migration (e.g. staging before deploy) for the old definitions"
        )
    return draft


def label(st: Statement) -> str:
    """A few words for a person: ``create table users``, ``drop column users.email``."""
    node = _Drafter._unwrap(st.node) or st.node
    if isinstance(node, ast.AlterTableStmt) and node.cmds:
        cmd = node.cmds[0]
        what = cmd.subtype.name.removeprefix("AT_")
        words = re.sub(r"(?<!^)(?=[A-Z])", " ", what).lower()
        subject = (
            cmd.name or getattr(cmd.def_, "colname", None) or getattr(cmd.def_, "conname", None)
        )
        text = f"{words} {node.relation.relname}" + (f".{subject}" if subject else "")
        return text + (f" (+{len(node.cmds) - 1})" if len(node.cmds) > 1 else "")
    if isinstance(node, ast.CreateStmt):
        return f"create table {node.relation.relname}"
    if isinstance(node, ast.IndexStmt):
        return f"create index {node.idxname}"
    if isinstance(node, ast.DropStmt):
        kind = node.removeType.name.removeprefix("OBJECT_").lower()
        return f"drop {kind}"
    if isinstance(node, ast.CreateEnumStmt):
        return f"create type {_names(node.typeName)[-1]}"
    if isinstance(node, ast.AlterEnumStmt):
        return f"alter type {_names(node.typeName)[-1]}"
    if isinstance(node, ast.RenameStmt):
        return f"rename to {node.newname}"
    return type(node).__name__.removesuffix("Stmt").lower()


# ---- the runbook's two scenarios as direct actions -----------------------------------


def make_column_nullable(table: str, column: str, schema: str = "public") -> ReverseDraft:
    """Runbook: "Added column breaks old application code" -> make the new column nullable."""
    target = qname(schema, table) if schema != "public" else qi(table)
    draft = ReverseDraft(f"make {table}.{column} nullable")
    draft.statements.append(f"ALTER TABLE {target} ALTER COLUMN {qi(column)} DROP NOT NULL;")
    draft.warnings.append(
        f"old code inserting without {column} now stores NULL; the app must tolerate NULLs there"
    )
    return draft


def readd_dropped_column(
    old: OldSchema, table: str, column: str, schema: str = "public"
) -> ReverseDraft:
    """Runbook: "Dropped column still needed by app" -> re-add it from the old definition."""
    draft = ReverseDraft(f"re-add {table}.{column}", old_definitions_from=old.source)
    old_table = old.table(schema, table)
    if old_table is None or column not in old_table.columns:
        raise ProviderError(f"{old.source} has no column {table}.{column}; cannot re-add it")
    draft.data_loss.append(DATA_GONE.format(col=f"{table}.{column}"))
    draft.statements.extend(readd_column_sql(old_table, column, draft))
    return draft
