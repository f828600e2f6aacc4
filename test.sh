#!/usr/bin/env bash
# Runs every larder test on this machine, installing what the tests talk to
# (the real Nix client) first if it is missing. Usage: ./test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests use, by the command that shows each is present.
declare -A packages=([nix-store]=nix-bin [bzip2]=bzip2 [curl]=curl)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The end-to-end tests must run against the real Nix client, never skip it.
export LARDER_REQUIRE_NIX=1
# A CA bundle meant for other tools breaks Go's and the S3 clients' TLS.
unset AWS_CA_BUNDLE
export CGO_ENABLED=0

unformatted=$(gofmt -l cmd internal e2e 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "test.sh: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -v -count=1 -timeout 25m "$@" ./...
