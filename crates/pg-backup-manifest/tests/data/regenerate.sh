#!/usr/bin/env bash
# Regenerates the committed backup_manifest test data from REAL servers (run as root; the
# servers run as `postgres`). Usage: tests/data/regenerate.sh [repo root]
#
# For each backup it keeps: <name>.manifest (the server's backup_manifest, byte for byte),
# <name>.files (every regular file of the backup: hex path, size; `find` order) and a few small
# real files under <name>/ (backup_label, PG_VERSION, global/pg_control) for checksum tests.
# Whole backups are never committed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$(cd "$here/../../../.." && pwd)}

make_backups() { # <bin dir> <tag> <name:checksum:extra args>...
    local bin=$1 tag=$2; shift 2
    local work; work=$(mktemp -d /dev/shm/pgbm-$tag.XXXXXX)
    chown postgres: "$work"; chmod 755 "$work"
    cleanup="runuser -u postgres -- '$bin/pg_ctl' -D '$work/data' -m immediate stop >/dev/null 2>&1 || true; rm -rf '$work'"
    trap "$cleanup" EXIT
    runuser -u postgres -- "$bin/initdb" -D "$work/data" --no-locale -E UTF8 -A trust -k >/dev/null
    cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work'
wal_level = replica
max_wal_senders = 4
fsync = off
CONF
    runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -l "$work/log" -w start >/dev/null
    runuser -u postgres -- mkdir "$work/ts"
    runuser -u postgres -- "$bin/psql" -X -q -h "$work" -d postgres \
        -c "CREATE TABLESPACE ts LOCATION '$work/ts'" -c "CREATE TABLE t (i int) TABLESPACE ts" \
        -c "INSERT INTO t SELECT generate_series(1, 1000)"
    # A file whose name is not valid UTF-8: the server lists it as Encoded-Path.
    runuser -u postgres -- sh -c "printf 'odd\n' > '$work/data/odd_'\$(printf '\\377')'.txt'"
    for spec in "$@"; do
        IFS=: read -r name algo extra <<<"$spec"
        # shellcheck disable=SC2086
        runuser -u postgres -- "$bin/pg_basebackup" -h "$work" -d "dbname=postgres" -D "$work/$name" -Fp -c fast \
            --manifest-checksums="$algo" -T "$work/ts=$work/ts-$name" $extra
        cp "$work/$name/backup_manifest" "$here/$name.manifest"
        (cd "$work/$name" && find -L . -type f ! -name backup_manifest -printf '%P\0%s\0' |
            python3 -c 'import sys
parts = sys.stdin.buffer.read().split(b"\0")[:-1]
for p, s in zip(parts[::2], parts[1::2]): print(p.hex(), s.decode())') >"$here/$name.files"
        mkdir -p "$here/$name/global"
        for f in backup_label PG_VERSION global/pg_control; do cp "$work/$name/$f" "$here/$name/$f"; done
    done
    eval "$cleanup"
    trap - EXIT
}

make_backups /usr/lib/postgresql/15/bin pg15 \
    "pg15-crc32c:CRC32C:-X fetch" \
    "pg15-sha256:SHA256:-X stream" \
    "pg15-none:NONE:-X none" \
    "pg15-sha512-encoded:SHA512:-X none --manifest-force-encode"
if [ -x "$root/.cache/pg/tools-17/bin/pg_basebackup" ]; then
    make_backups "$root/.cache/pg/tools-17/bin" pg17 "pg17-sha224:SHA224:-X fetch"
fi
chmod -R u+rwX,go+rX "$here"
