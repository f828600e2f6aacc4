#!/usr/bin/env bash
# Runs every larder test on this machine, installing what the tests talk to
# (the real Nix client, S3 clients, and the OCI tools that read larder's
# image) first if it is missing. Usage: ./test.sh [go test flags]
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests use, by a file that shows each is present.
declare -A packages=(
  [/usr/bin/nix-store]=nix-bin [/usr/bin/bzip2]=bzip2 [/usr/bin/curl]=curl
  [/usr/bin/aws]=awscli [/usr/bin/s3cmd]=s3cmd [/usr/bin/rclone]=rclone
  [/usr/bin/skopeo]=skopeo [/usr/bin/umoci]=umoci [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/qemu-arm-static]=qemu-user-static [/usr/bin/chromium]=chromium [/usr/sbin/nginx]=nginx
)
missing=()
for file in "${!packages[@]}"; do
  [ -x "$file" ] || missing+=("${packages[$file]}")
done
# PostgreSQL's server binaries live in a versioned directory.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The MinIO client and server, test peers only: built into .tools/, never
# module dependencies.
declare -A tools=(
  [mc]=github.com/minio/mc@v0.0.0-20250313080218-cf909e1063a9
  [minio]=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
)
export PATH="$PWD/.tools/bin:$PATH"
for tool in "${!tools[@]}"; do
  if ! [ -x ".tools/bin/$tool" ]; then
    echo "test.sh: installing ${tools[$tool]}" >&2
    GOBIN="$PWD/.tools/bin" go install "${tools[$tool]}"
  fi
done

# The end-to-end tests must run against the real clients (and the release
# binaries under the real emulators), never skip them.
export LARDER_REQUIRE_NIX=1 LARDER_REQUIRE_S3_CLIENTS=1 LARDER_REQUIRE_POSTGRES=1 LARDER_REQUIRE_S3=1
# ... the image against skopeo and umoci, the systemd units against systemd-analyze,
# the dashboard in headless Chromium.
export LARDER_REQUIRE_OCI_TOOLS=1 LARDER_REQUIRE_SYSTEMD=1 LARDER_REQUIRE_QEMU=1 LARDER_REQUIRE_CHROMIUM=1
# ... and upstream caches against nginx serving what nix copy wrote.
export LARDER_REQUIRE_NGINX=1
# A CA bundle meant for other tools breaks Go's and the S3 clients' TLS.
unset AWS_CA_BUNDLE
export CGO_ENABLED=0

unformatted=$(gofmt -l cmd internal e2e bench release nix contrib 2>/dev/null || true)
if [ -n "$unformatted" ]; then
  echo "test.sh: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# The release's other systems must at least build and vet, tests included.
GOOS=windows GOARCH=amd64 go vet ./...
GOOS=darwin GOARCH=arm64 go vet ./...
go test -v -count=1 -timeout 25m "$@" ./...
