"""A realistic shop database (users, orders, events), generated server-side, fast.

Why not pgbench: its filler rows are blanks that compress to almost nothing, so
snapshot and restore timings on it say nothing about a real database. These rows
carry varied text (names, addresses, notes of varying length), json payloads
and timestamps, built by the server from a few word lists with
``generate_series``/``random()``/``md5``: no rows cross the network, so a few
hundred MB take tens of seconds, not minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from providers.postgres.conn import connect

USERS_PER_BATCH = 4000
ORDERS_PER_USER = 4
EVENTS_PER_USER = 9
# Tables the generator fills; a team's own migrations folder gets them in this schema.
DATA_SCHEMA_FOR_TEAM_FOLDERS = "drill_data"

FIRST = "Ada Alan Grace Linus Margaret Ken Barbara Dennis Radia Tim Frances Edsger Hedy Guido Anita Bjarne Sophie Yukihiro Katherine Donald Shafi Leslie Marissa Niklaus Jean Ines Omar Priya Mateo Aiko Lars Chioma Dmitri Elena Kofi Ana"
LAST = "Lovelace Turing Hopper Torvalds Hamilton Thompson Liskov Ritchie Perlman Berners-Lee Allen Dijkstra Lamarr Rossum Borg Stroustrup Wilson Matsumoto Johnson Knuth Goldwasser Lamport Mayer Wirth Sammet Okafor Haddad Raman Garcia Tanaka Nilsen Petrov Rossi Mensah Silva"
CITIES = "Lisbon Berlin Nairobi Osaka Toronto Lima Oslo Accra Pune Lyon Austin Krakow Seoul Porto Dublin Quito Cairo Perth Turin Bogota"
COUNTRIES = "PT DE KE JP CA PE NO GH IN FR US PL KR BR IE EC EG AU IT CO"
WORDS = (
    "please deliver before noon the parcel was damaged gift wrap requested leave at the "
    "front desk call on arrival fragile handle with care second floor no doorbell customer "
    "asked for invoice refund pending replacement shipped backorder expected next week "
    "discount applied loyalty member express shipping weekend delivery contact by email "
    "address changed after checkout warehouse north returned unopened colour mismatch "
    "size exchange priority support ticket escalated resolved by phone"
)
PAGES = "/ /pricing /cart /checkout /orders /account /search /help /blog/launch /product/mug /product/shirt /product/poster"
KINDS = "page_view add_to_cart checkout_started payment_failed payment_succeeded login logout search review_posted"
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0|Mozilla/5.0 (Macintosh) Safari/17.4|"
    "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0|okhttp/4.12.0|curl/8.5.0"
)


def _arr(words: str, sep: str = " ") -> sql.Composable:
    return sql.SQL("{}::text[]").format(sql.Literal(words.split(sep)))


@dataclass(frozen=True)
class DatasetResult:
    users: int
    orders: int
    events: int
    bytes: int
    seconds: float


def _pick(arr: sql.Composable) -> sql.Composable:
    return sql.SQL("({a})[1 + floor(random() * cardinality({a}))::int]").format(a=arr)


def _sentence(n: int) -> sql.Composable:
    words = _arr(WORDS)
    return sql.SQL(" || ' ' || ").join([_pick(words)] * n)


def create_tables(conn: psycopg.Connection, schema: str) -> None:
    """The example's tables in ``schema`` (used when the team's own folder is drilled)."""
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
    conn.execute(
        sql.SQL(
            "CREATE TYPE {}.order_status AS ENUM "
            "('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded')"
        ).format(s)
    )
    conn.execute(
        sql.SQL(
            """
        CREATE TABLE {s}.users (id serial PRIMARY KEY, email varchar(255) NOT NULL UNIQUE,
            name text NOT NULL, country char(2) NOT NULL, profile jsonb DEFAULT '{{}}' NOT NULL,
            created_at timestamptz DEFAULT now() NOT NULL, last_login_at timestamptz);
        CREATE TABLE {s}.orders (id bigserial PRIMARY KEY,
            user_id integer NOT NULL REFERENCES {s}.users(id) ON DELETE CASCADE,
            status {s}.order_status DEFAULT 'pending' NOT NULL, total_cents integer NOT NULL,
            currency char(3) DEFAULT 'EUR' NOT NULL, note text,
            created_at timestamptz DEFAULT now() NOT NULL);
        CREATE INDEX ON {s}.orders (user_id);
        CREATE TABLE {s}.events (id bigserial PRIMARY KEY, user_id integer,
            kind varchar(40) NOT NULL, payload jsonb NOT NULL,
            occurred_at timestamptz DEFAULT now() NOT NULL);
        CREATE INDEX ON {s}.events (user_id, occurred_at);
        """
        ).format(s=s)
    )


def _insert_batch(conn: psycopg.Connection, schema: str, first_id: int, count: int) -> None:
    s = sql.Identifier(schema)
    first, last = _arr(FIRST), _arr(LAST)
    conn.execute(
        sql.SQL(
            """
        INSERT INTO {s}.users (id, email, name, country, profile, created_at, last_login_at)
        SELECT g,
               lower({first}) || '.' || lower({last}) || g || '@' ||
                   (ARRAY['example.com','mail.test','shop.invalid'])[1 + mod(g, 3)],
               {first} || ' ' || {last},
               {country},
               jsonb_build_object(
                   'city', {city}, 'newsletter', random() < 0.4,
                   'address', (10 + mod(g, 190)) || ' ' || {last} || ' Street',
                   'tags', jsonb_build_array({word}, {word}),
                   'bio', left({bio}, 10 + (random() * 120)::int)),
               now() - random() * interval '900 days',
               CASE WHEN random() < 0.8 THEN now() - random() * interval '30 days' END
        FROM generate_series(%(lo)s::int, %(hi)s::int) g
        """
        ).format(
            s=s,
            first=_pick(first),
            last=_pick(last),
            country=_pick(_arr(COUNTRIES)),
            city=_pick(_arr(CITIES)),
            word=_pick(_arr(WORDS)),
            bio=_sentence(12),
        ),
        {"lo": first_id, "hi": first_id + count - 1},
    )
    conn.execute(
        sql.SQL(
            """
        INSERT INTO {s}.orders (user_id, status, total_cents, currency, note, created_at)
        SELECT u, (enum_range(NULL::{s}.order_status))[1 + floor(random() * 6)::int],
               (random() * 25000)::int + 199,
               (ARRAY['EUR','USD','GBP','JPY'])[1 + floor(random() * 4)::int],
               CASE WHEN random() < 0.7 THEN left({note}, 8 + (random() * 160)::int) END,
               now() - random() * interval '800 days'
        FROM generate_series(%(lo)s::int, %(hi)s::int) u, generate_series(1, {per}) k
        """
        ).format(s=s, note=_sentence(14), per=sql.Literal(ORDERS_PER_USER)),
        {"lo": first_id, "hi": first_id + count - 1},
    )
    conn.execute(
        sql.SQL(
            """
        INSERT INTO {s}.events (user_id, kind, payload, occurred_at)
        SELECT u, {kind},
               jsonb_build_object(
                   'page', {page}, 'referrer', {page},
                   'session', md5(u::text || k::text || random()::text),
                   'user_agent', {agent},
                   'duration_ms', (random() * 9000)::int,
                   'cart', jsonb_build_array(
                       jsonb_build_object('sku', upper(substr(md5(k::text || u::text), 1, 8)),
                                          'qty', 1 + (random() * 3)::int)),
                   'query', CASE WHEN random() < 0.3 THEN {query} END),
               now() - random() * interval '400 days'
        FROM generate_series(%(lo)s::int, %(hi)s::int) u, generate_series(1, {per}) k
        """
        ).format(
            s=s,
            kind=_pick(_arr(KINDS)),
            page=_pick(_arr(PAGES)),
            agent=_pick(_arr(AGENTS, "|")),
            query=_sentence(3),
            per=sql.Literal(EVENTS_PER_USER),
        ),
        {"lo": first_id, "hi": first_id + count - 1},
    )


def database_bytes(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def fill(
    url: str,
    target_bytes: int,
    *,
    schema: str = "public",
    progress: Callable[[int, int], None] | None = None,
) -> DatasetResult:
    """Insert users with their orders and events in batches until the database reaches
    ``target_bytes`` (at least one batch); then advance the sequences and ANALYZE."""
    started = time.monotonic()
    users = 0
    with connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        size = database_bytes(conn)
        batch = USERS_PER_BATCH
        while users == 0 or size < target_bytes:
            # Small targets (tests) get small batches, so they stay close to the target.
            remaining = max(target_bytes - size, 0)
            count = max(50, min(batch, remaining // 4000))
            _insert_batch(conn, schema, users + 1, count)
            users += count
            size = database_bytes(conn)
            if progress:
                progress(size, target_bytes)
        s = sql.Identifier(schema)
        conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence({t}, 'id'), %s)").format(
                t=sql.Literal(f"{schema}.users")
            ),
            (users,),
        )
        conn.execute(sql.SQL("ANALYZE {}.users, {}.orders, {}.events").format(s, s, s))
        size = database_bytes(conn)
    return DatasetResult(
        users=users,
        orders=users * ORDERS_PER_USER,
        events=users * EVENTS_PER_USER,
        bytes=size,
        seconds=time.monotonic() - started,
    )
