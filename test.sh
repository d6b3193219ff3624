#!/usr/bin/env bash
# The test command: installs the Debian packages the tests need when they are missing, then runs every test.
# Extra arguments go to `dotnet test` (e.g. --filter FullyQualifiedName~Sandbox).
set -euo pipefail
cd "$(dirname "$0")"
build/install-test-deps.sh
# The tests' scratch files (tiny checkpoints, runs, sockets) live in one directory of this run, removed at the end, so
# repeated runs never fill the machine's /tmp.
scratch="$(mktemp -d "${TMPDIR:-/tmp}/fedllm-tests.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TMPDIR="$scratch"
dotnet test "$@"
