#!/bin/sh
# Prints every sanitizer report in DIR (ASan, LSan and UBSan write one file per process there);
# exits 1 if there is any, so that a report in any process, child or re-exec'd, fails the run.
#   scripts/sanitizer-reports.sh DIR
set -eu
dir="${1:?usage: $0 DIR}"
n=0
for f in "$dir"/*; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    echo "=== $f" >&2
    head -n 60 "$f" >&2
done
echo "sanitizers: $n report(s) in $dir" >&2
[ "$n" -eq 0 ]
