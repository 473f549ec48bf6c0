#!/usr/bin/env bash
# Installs what finledger needs, skipping what is already present: Debian's PostgreSQL server binaries
# (the embedded database for `make run` and the tests), gcc and make (librdkafka is built from
# source), and curl (the README's API examples, which a test runs). With --tests, also the tansu
# Kafka-protocol broker (crates.io) that the Kafka tests and the relay benchmark start.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  missing+=(postgresql-15)
fi
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install as root: apt-get install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--tests" ] && ! command -v tansu >/dev/null 2>&1 \
  && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  echo "installing tansu (the tests' Kafka-protocol broker); this takes a while, once"
  cargo install tansu --version 0.6.0 --locked --features dynostore --quiet
fi
