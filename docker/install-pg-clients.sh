#!/bin/sh
# Installs the PostgreSQL client tools (pg_dump, pg_restore, psql) for every server major
# in PG_MAJORS (e.g. "15 16") from the PostgreSQL project's apt repository (PGDG): they
# must match the SERVER's major, and land in /usr/lib/postgresql/<major>/bin, where rollbot
# looks first. Run by the Dockerfile's runtime stage as root; tests/test_dockerfile.py runs
# it with stubbed apt-get/curl and ROOT set to a scratch folder.
#
#   PG_MAJORS   space-separated majors (required; digits only)
#   ROOT        prefix for every file it writes or checks (default: empty, the real /)
set -eu

root="${ROOT:-}"
majors="${PG_MAJORS:-}"
keyring="$root/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc"
sources="$root/etc/apt/sources.list.d/pgdg.list"
export DEBIAN_FRONTEND=noninteractive

# The package list. pkgs starts empty: under `set -u` an unset one stops the build.
pkgs=""
for v in $majors; do
  case "$v" in
    '' | *[!0-9]*)
      echo "install-pg-clients: PG_MAJORS must be majors like \"15 16\", got '$v'" >&2
      exit 2
      ;;
  esac
  pkgs="$pkgs postgresql-client-$v"
done
if [ -z "$pkgs" ]; then
  echo "install-pg-clients: PG_MAJORS is empty; name at least one major, e.g. PG_MAJORS=15" >&2
  exit 2
fi

apt-get update
apt-get install -y --no-install-recommends ca-certificates curl gnupg
install -d "$(dirname "$keyring")" "$(dirname "$sources")"
curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc -o "$keyring"
echo "deb [signed-by=${keyring#"$root"}] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
  >"$sources"
apt-get update
# Word splitting of $pkgs is intended: one argument per package (names checked above).
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $pkgs
apt-get purge -y --auto-remove curl gnupg
rm -rf "$root"/var/lib/apt/lists/*

# Every major asked for is really there.
for v in $majors; do
  "$root/usr/lib/postgresql/$v/bin/pg_dump" --version
done
