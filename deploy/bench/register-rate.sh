#!/usr/bin/env bash
# Drives a running Pinhole registrar with sipp and prints REGISTERs per second.
#   deploy/bench/register-rate.sh [TARGET] [CALLS] [RATE] [SCENARIO]
# SCENARIO is register.xml (default) or register-auth.xml (needs a user
# "bench" with password "bench" in the users file).
# Defaults: 127.0.0.1:5070 (the quick-start registrar), 20000 REGISTERs,
# offered at 5000/s, UDP, 200 in flight at most. Start Pinhole first, e.g.
#   go run ./cmd/pinhole -config deploy/config/quickstart.yaml
set -euo pipefail
target=${1:-127.0.0.1:5070}
calls=${2:-20000}
rate=${3:-5000}
scenario=${4:-register.xml}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
start=$(date +%s.%N)
sipp -sf "$here/$scenario" -m "$calls" -r "$rate" -l 200 -i 127.0.0.1 -p 0 -t u1 \
  -nostdin -timeout 120s -timeout_error -trace_stat -fd 1 "$target" >/dev/null 2>&1 || true
end=$(date +%s.%N)
stat=$(ls ./*_.csv 2>/dev/null | head -1 || true)
ok=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") c=i} END{print $c}' "$stat")
failed=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="FailedCall(C)") c=i} END{print $c}' "$stat")
awk -v ok="$ok" -v f="$failed" -v s="$start" -v e="$end" \
  'BEGIN{printf "%d registrations ok, %d failed, %.1f s, %.0f registrations/s\n", ok, f, e-s, ok/(e-s)}'
