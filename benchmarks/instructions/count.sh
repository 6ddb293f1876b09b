#!/usr/bin/env bash
# Instructions per item of one case, counted by callgrind: immune to the
# machine's load, unlike a timer. Runs the case at two sizes and divides the
# difference, so start-up and imports cancel out.
#   usage: benchmarks/instructions/count.sh CASE BACKEND [N1 N2]
#   e.g.:  benchmarks/instructions/count.sh a asyncio
# Needs valgrind; uses the python on PATH (activate the dev venv first).
set -euo pipefail
case=$1 backend=$2 n1=${3:-2000} n2=${4:-6000}
here=$(dirname "$0")
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python "$here/case.py" "$case" "$backend" "$1" 2>&1 |
        grep -o "Collected : [0-9]*" | grep -o "[0-9]*"
}
a=$(count "$n1")
b=$(count "$n2")
echo "$case $backend $(((b - a) / (n2 - n1)))"
