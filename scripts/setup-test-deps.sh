#!/usr/bin/env bash
# What the tests need besides Node: for the client tests
# (test/integration/clients-psycopg and clients-pgjdbc) Python 3 with psycopg 3
# and a JDK with pgjdbc; for the alerting rules (test/unit/deploy-prometheus)
# promtool, from Debian's prometheus package. Installs only what is missing
# (Debian/Ubuntu: apt-get; psycopg from pip, else Debian's python3-psycopg), so
# it is quick when everything is there. `npm test` runs it.
# A missing dependency is never skipped: this script, or the test, fails saying what to install.
set -euo pipefail

JAR=${SWITCHYARD_PGJDBC_JAR:-/usr/share/java/postgresql.jar}
PY=${SWITCHYARD_TEST_PYTHON:-python3}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    echo "setup-test-deps: needs root to run: $*" >&2
    return 1
  fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "setup-test-deps: no apt-get here; install by hand: $*" >&2
    return 1
  fi
  echo "setup-test-deps: installing $*"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

has_psycopg() {
  "$1" -c 'import psycopg' 2>/dev/null
}

missing=()
{ command -v java >/dev/null && command -v javac >/dev/null; } || missing+=(default-jdk-headless)
[ -f "$JAR" ] || missing+=(libpostgresql-jdbc-java)
command -v "$PY" >/dev/null || missing+=(python3 python3-pip)
# The package also installs a Prometheus server unit (started where systemd
# runs); the tests use only its promtool.
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

if ! has_psycopg "$PY"; then
  echo "setup-test-deps: installing psycopg 3 with pip"
  if ! "$PY" -m pip install --quiet 'psycopg[binary]'; then
    echo "setup-test-deps: pip failed; falling back to Debian's python3-psycopg"
    apt_install python3-psycopg
  fi
fi

# Debian's package serves the system python3, which the tests also look for.
if ! has_psycopg "$PY" && ! has_psycopg /usr/bin/python3; then
  echo "setup-test-deps: psycopg 3 is still not importable by $PY" >&2
  exit 1
fi
[ -f "$JAR" ] || { echo "setup-test-deps: pgjdbc not found at $JAR" >&2; exit 1; }
command -v javac >/dev/null || { echo "setup-test-deps: javac (a JDK) not found" >&2; exit 1; }
command -v promtool >/dev/null || { echo "setup-test-deps: promtool not found (Debian package prometheus)" >&2; exit 1; }
echo "setup-test-deps: psycopg 3, pgjdbc, a JDK and promtool are there"
