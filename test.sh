#!/usr/bin/env bash
# The test command: installs the Debian packages the tests need when they are missing, then runs every test.
# Extra arguments go to `dotnet test` (e.g. --filter FullyQualifiedName~Sandbox).
set -euo pipefail
cd "$(dirname "$0")"
build/install-test-deps.sh
exec dotnet test "$@"
