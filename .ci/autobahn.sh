#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzingclient against a running WebSocket echo server.
#
#   usage: .ci/autobahn.sh HOST:PORT OUTDIR
#          (HOST:PORT means ws://HOST:PORT/ws; a full ws:// URL is taken as is)
#
# Writes OUTDIR/fuzzingclient.json (the spec), runs `wstest -m fuzzingclient` with a
# timeout, then reads OUTDIR/index.json and prints the count of each `behavior` and
# `behaviorClose` verdict. Exits non-zero (and lists the case ids) when any case's
# behavior or behaviorClose is not one of OK / INFORMATIONAL (NON-STRICT and
# UNIMPLEMENTED fail too), when no case ran, or when wstest failed or timed out.
#
# Environment knobs (all optional):
#   AUTOBAHN_VENV      venv holding wstest (default ~/.cache/tower-upgrade/autobahn;
#                      installed by .ci/install-autobahn.sh if missing)
#   AUTOBAHN_CASES     JSON list of cases            (default ["*"])
#   AUTOBAHN_EXCLUDE   JSON list of excluded cases   (default [], none: 1.* to 13.*)
#   AUTOBAHN_TIMEOUT   seconds before wstest is killed (default 2400)
#   AUTOBAHN_JOBS      wstest processes run side by side (default: CPUs, at most 4)
#   AUTOBAHN_ALLOW     extra verdicts to accept, space separated (e.g. "UNIMPLEMENTED")
#   AUTOBAHN_AGENT     agent name in the report     (default tower-upgrade)
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 HOST:PORT OUTDIR" >&2
    exit 2
fi

case "$1" in
    ws://* | wss://*) URL="$1" ;;
    *) URL="ws://$1/ws" ;;
esac
OUTDIR="$2"
HOME="${HOME:-/root}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AUTOBAHN_VENV:-$HOME/.cache/tower-upgrade/autobahn}"
WSTEST="$VENV/bin/wstest"
CASES="${AUTOBAHN_CASES:-[\"*\"]}"
EXCLUDE="${AUTOBAHN_EXCLUDE:-[]}"
TIMEOUT="${AUTOBAHN_TIMEOUT:-2400}"
JOBS="${AUTOBAHN_JOBS:-$(( $(nproc) < 4 ? $(nproc) : 4 ))}"
AGENT="${AUTOBAHN_AGENT:-tower-upgrade}"

if [ ! -x "$WSTEST" ]; then
    AUTOBAHN_VENV="$VENV" bash "$HERE/install-autobahn.sh"
fi

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
rm -f "$OUTDIR/index.json"
rm -rf "$OUTDIR"/job-*

# The cases are split over JOBS wstest processes run side by side: wstest is one Python
# process, and the compression cases (12.*, 13.*: 216 of 517) cost it about 4 s each.
# The groups: 1.*-10.* together (about 3 minutes), then each 12.N.* and 13.N.* (18 cases
# each), dealt out round-robin from the second job on. An explicit AUTOBAHN_CASES runs in
# one process.
if [ -z "${AUTOBAHN_CASES:-}" ] && [ "$JOBS" -gt 1 ]; then
    GROUPS_JSON='[["1.*","2.*","3.*","4.*","5.*","6.*","7.*","9.*","10.*"],["12.1.*"],["12.2.*"],["12.3.*"],["12.4.*"],["12.5.*"],["13.1.*"],["13.2.*"],["13.3.*"],["13.4.*"],["13.5.*"],["13.6.*"],["13.7.*"]]'
else
    JOBS=1
    GROUPS_JSON="[$CASES]"
fi

OUTDIR="$OUTDIR" URL="$URL" GROUPS_JSON="$GROUPS_JSON" JOBS="$JOBS" EXCLUDE="$EXCLUDE" \
AGENT="$AGENT" python3 - <<'PY'
import json, os
groups = json.loads(os.environ["GROUPS_JSON"])
jobs = int(os.environ["JOBS"])
cases = [[] for _ in range(jobs)]
cases[0] += groups[0]
for i, group in enumerate(groups[1:]):
    cases[(i + 1) % jobs] += group
for n, job_cases in enumerate(cases):
    outdir = os.path.join(os.environ["OUTDIR"], "job-%d" % n)
    os.makedirs(outdir)
    spec = {
        "outdir": outdir,
        "servers": [{"agent": os.environ["AGENT"], "url": os.environ["URL"]}],
        "cases": job_cases,
        "exclude-cases": json.loads(os.environ["EXCLUDE"]),
        "exclude-agent-cases": {},
    }
    with open(os.path.join(outdir, "fuzzingclient.json"), "w") as f:
        json.dump(spec, f, indent=2)
PY

echo "autobahn: fuzzingclient -> $URL (cases $CASES in $JOBS jobs, excluded $EXCLUDE, timeout ${TIMEOUT}s)"
start=$(date +%s)
pids=()
for dir in "$OUTDIR"/job-*; do
    # wstest writes a few stray files into its working directory: run it in its job's dir.
    (cd "$dir" && timeout --kill-after=10 "$TIMEOUT" "$WSTEST" -m fuzzingclient \
        -s "$dir/fuzzingclient.json") >"$dir/wstest.log" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do
    wait "$pid" || rc=$?
done
echo "autobahn: wstest exited $rc after $(( $(date +%s) - start ))s (logs: $OUTDIR/job-*/wstest.log)"
if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "autobahn: wstest timed out after ${TIMEOUT}s" >&2
    tail -n 20 "$OUTDIR"/job-*/wstest.log >&2 || true
    # still parse a partial index.json below if one exists, but fail in the end
fi

# One index.json for the verdicts, merged from the jobs'.
python3 - "$OUTDIR" <<'PY'
import glob, json, os, sys
merged = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "job-*", "index.json"))):
    with open(path) as f:
        for agent, cases in json.load(f).items():
            merged.setdefault(agent, {}).update(cases)
if merged:
    with open(os.path.join(sys.argv[1], "index.json"), "w") as f:
        json.dump(merged, f, indent=2)
PY

set +e
AGENT="$AGENT" ALLOW="${AUTOBAHN_ALLOW:-}" python3 - "$OUTDIR/index.json" <<'PY'
import json, os, sys
from collections import Counter

path = sys.argv[1]
try:
    with open(path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    print("autobahn: cannot read %s: %s" % (path, e))
    sys.exit(1)

allowed = {"OK", "INFORMATIONAL"} | set(os.environ.get("ALLOW", "").split())

def case_key(cid):
    return [int(p) if p.isdigit() else p for p in cid.split(".")]

status = 0
total = 0
for agent, cases in sorted(index.items()):
    behavior = Counter()
    closing = Counter()
    bad = []
    for cid in sorted(cases, key=case_key):
        r = cases[cid]
        b = r.get("behavior", "MISSING")
        c = r.get("behaviorClose", "MISSING")
        behavior[b] += 1
        closing[c] += 1
        if b not in allowed or c not in allowed:
            bad.append((cid, b, c))
    total += len(cases)
    fmt = lambda cnt: ", ".join("%s=%d" % kv for kv in sorted(cnt.items()))
    print("autobahn: agent %s: %d cases" % (agent, len(cases)))
    print("autobahn:   behavior:      %s" % fmt(behavior))
    print("autobahn:   behaviorClose: %s" % fmt(closing))
    if bad:
        status = 1
        print("autobahn:   %d failing cases (behavior/behaviorClose):" % len(bad))
        for cid, b, c in bad:
            print("autobahn:     %s  %s / %s" % (cid, b, c))

if total == 0:
    print("autobahn: no cases ran")
    status = 1
sys.exit(status)
PY
verdict=$?
set -e

if [ "$rc" -ne 0 ] || [ "$verdict" -ne 0 ]; then
    echo "autobahn: FAIL (reports: $OUTDIR/job-*/index.html)"
    exit 1
fi
echo "autobahn: PASS (reports: $OUTDIR/job-*/index.html)"
