#!/bin/sh
# fuzz.sh GO FUZZTIME: run every Fuzz* target in the tree for FUZZTIME.
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" at the -fuzztime boundary when a worker is still
# mid-call (golang/go#75804, fixed in Go 1.27): nothing was found and no
# input was written. That one signature, and only it, is run once more
# and said so; the rerun must pass. Anything else (a failing input, a
# panic, a t.Error) fails at once.
set -eu
GO=${1:-go}
FUZZTIME=${2:-10s}
targets=$(git grep -n '^func Fuzz' -- '*_test.go' | sed -E 's#^(.*)/[^/]*_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*).*#./\1:\2#')
[ -n "$targets" ] || { echo "no fuzz targets found"; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
	pkg=${t%%:*}
	fn=${t##*:}
	echo "fuzz $pkg $fn for $FUZZTIME"
	if "$GO" test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
		cat "$log"
		continue
	fi
	cat "$log"
	if grep -q 'context deadline exceeded' "$log" && ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
		echo "fuzz $pkg $fn: the toolchain's fuzztime deadline race (golang/go#75804), nothing found; running it once more"
		"$GO" test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$pkg"
		continue
	fi
	exit 1
done
