#!/usr/bin/env bash
# Runs CMD… next to a throw-away PostgreSQL cluster: initdb in a temporary directory, a free
# loopback port (and a Unix socket in that directory), password authentication; the cluster is
# stopped and deleted when CMD ends, also when it fails or is interrupted. Installs the Debian
# `postgresql` package first if no `initdb` is found (idempotent).
#   scripts/with-postgres.sh cargo test -p vrf-tests --test serve_postgres
# CMD sees:
#   VRF_TEST_POSTGRES_URL       postgres://vrf:PASSWORD@127.0.0.1:PORT/postgres (superuser)
#   VRF_TEST_POSTGRES_PASSWORD  that password (tests check it never shows up)
#   VRF_TEST_PGCTL              a pg_ctl for this cluster: `$VRF_TEST_PGCTL stop|start`
#   VRF_TEST_POSTGRES_TLS_URL   a role that may connect over TLS only (when openssl exists)
#   PGSSLROOTCERT               the throw-away CA that signed the server's certificate (idem)
set -euo pipefail
if [ "$#" -eq 0 ]; then
  echo "usage: scripts/with-postgres.sh CMD [ARG…]" >&2
  exit 2
fi

find_bin() {
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  # Debian keeps the server binaries off PATH, one directory per major version.
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

bin="$(find_bin || true)"
if [ -z "$bin" ]; then
  echo "with-postgres: installing the Debian postgresql package" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  bin="$(find_bin)"
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/vrf-pg.XXXXXX")"
# initdb refuses to run as root: root runs the cluster as the `postgres` user.
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  as_owner=(runuser -u postgres --)
fi
cleanup() {
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
password="vrf-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$password" > "$dir/pw"
chmod 644 "$dir/pw"
"${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U vrf --auth=scram-sha-256 --pwfile="$dir/pw" \
  --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
rm -f "$dir/pw"
# The settings live in the cluster, so a plain `pg_ctl start` (the restart test) finds them.
cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
EOF
# TLS with a throw-away certificate for 127.0.0.1, and a role that may only connect
# over TLS (`vrf_tls`, same password): the TLS test connects as it (feature `postgres-tls`).
if command -v openssl >/dev/null 2>&1; then
  # A throw-away CA, and the server's certificate for 127.0.0.1 signed by it.
  openssl req -new -x509 -days 2 -nodes -subj "/CN=vrf test CA" -keyout "$dir/ca.key" \
    -out "$dir/ca.crt" >/dev/null 2>&1
  openssl req -new -nodes -subj "/CN=127.0.0.1" -keyout "$dir/server.key" \
    -out "$dir/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
  openssl x509 -req -days 2 -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1
  cp "$dir/server.crt" "$dir/server.key" "$dir/data/"
  chmod 600 "$dir/data/server.key"
  [ "${#as_owner[@]}" -gt 0 ] && chown postgres "$dir/data/server.crt" "$dir/data/server.key"
  echo "ssl = on" >>"$dir/data/postgresql.conf"
  hba="$dir/data/pg_hba.conf"
  { echo "hostnossl all vrf_tls 127.0.0.1/32 reject"
    echo "hostssl all vrf_tls 127.0.0.1/32 scram-sha-256"
    cat "$hba"; } >"$hba.new" && mv "$hba.new" "$hba"
  [ "${#as_owner[@]}" -gt 0 ] && chown postgres "$hba"
  export PGSSLROOTCERT="$dir/ca.crt"
fi
cat >"$dir/pg_ctl" <<EOF
#!/usr/bin/env bash
exec ${as_owner[*]} "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w "\$@"
EOF
chmod 755 "$dir/pg_ctl"
"$dir/pg_ctl" start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

export VRF_TEST_POSTGRES_URL="postgres://vrf:${password}@127.0.0.1:${port}/postgres"
if [ -n "${PGSSLROOTCERT:-}" ]; then
  PGPASSWORD="$password" psql -q "postgres://vrf@127.0.0.1:${port}/postgres?sslmode=disable" \
    -c "CREATE ROLE vrf_tls LOGIN CREATEDB PASSWORD '$password'" >/dev/null
  export VRF_TEST_POSTGRES_TLS_URL="postgres://vrf_tls:${password}@127.0.0.1:${port}/postgres"
fi
export VRF_TEST_POSTGRES_PASSWORD="$password"
export VRF_TEST_PGCTL="$dir/pg_ctl"
echo "with-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)" >&2
set +e
"$@"
status=$?
set -e
exit "$status"
