#!/usr/bin/env bash
# Runs every stsbind benchmark and prints the table against DESIGN.md's
# targets (make bench). Raw `go test -bench` output, benchstat-compatible,
# goes to hack/bench/out/bench-<time>.txt, the table to table-<time>.txt;
# bench.txt and table.txt are the latest, and the table is also written to
# hack/bench/table.txt, which is committed and which README links. Compare
# two runs with
#   benchstat hack/bench/out/bench-A.txt hack/bench/out/bench-B.txt
#
# The pure webhook benchmarks report instr/op next to ns/op: instructions
# counted by callgrind (valgrind must be installed), which unlike time do not
# move with the load of the machine.
#
# BENCH_SCALES: controller scale runs, one process each (default "1000 10000",
# the last once more under BENCH_GOMEMLIMIT, default 120MiB;
# the 10,000 run takes several minutes on 2 cores; "" runs none). Every STSBIND_BENCH_*
# variable of hack/bench/*_test.go passes through (STS and API QPS/burst,
# concurrency, rate, duration, lifetime).
set -euo pipefail
cd "$(dirname "$0")/../.."

out=hack/bench/out
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw="$out/bench-$stamp.txt"
table="$out/table-$stamp.txt"
export KUBEBUILDER_ASSETS="${KUBEBUILDER_ASSETS:-$(hack/envtest-assets.sh)}"

# benchstat reads "key: value" lines as configuration of the runs below them.
{
  echo "cpus: $(nproc)"
  echo "mem: $(awk '/MemTotal/ {printf "%.0fGiB", $2/1048576}' /proc/meminfo)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)"
} >"$raw"

run() {
  echo "== $*" >&2
  "$@" 2>&1 | tee -a "$raw" | grep -E '^(Benchmark|ok|FAIL|---|panic)|_test.go:' >&2
}

# Pure mutation, patch and admission handler (package webhook, no control
# plane; instr/op from callgrind), and the bindings lookup against envtest;
# five runs each for benchstat.
run go test -run '^$' -bench 'BenchmarkMutatePod|BenchmarkAdmission|BenchmarkLookup' -benchmem -count 5 -timeout 30m ./webhook/
# The admission endpoint over HTTPS at 1,000 reviews/s, 10 s per case.
STSBIND_BENCH_SCALE=1 run go test -run '^$' -bench BenchmarkWebhookHTTPS -benchtime 1x -timeout 10m ./hack/bench/
# The missed-pods report's pod cache at 10,000 pods, stripped and whole.
STSBIND_BENCH_SCALE=1 run go test -run '^$' -bench BenchmarkPodCache -benchtime 1x -timeout 30m ./hack/bench/
# The controller at scale: a fresh control plane and process per scale, so
# that peak RSS is that scale's.
# The STS limit is set for the 60 s target: main.go's default (100/s, burst
# 200) alone needs 98 s for 10,000 bindings.
export STSBIND_BENCH_STS_QPS="${STSBIND_BENCH_STS_QPS:-250}" STSBIND_BENCH_STS_BURST="${STSBIND_BENCH_STS_BURST:-250}"
scales=${BENCH_SCALES-1000 10000}
for n in $scales; do
  STSBIND_BENCH_SCALE=$n run go test -run '^$' -bench BenchmarkControllerScale -benchtime 1x -timeout 60m ./hack/bench/
done
# The largest scale again with the controller under a Go soft memory limit
# (BENCH_GOMEMLIMIT, "" for no such run): the chart sets GOMEMLIMIT to the
# container's memory limit, and this shows what a tight one costs.
if [ -n "${BENCH_GOMEMLIMIT-120MiB}" ] && [ -n "$scales" ]; then
  STSBIND_BENCH_SCALE=${scales##* } STSBIND_BENCH_GOMEMLIMIT=${BENCH_GOMEMLIMIT-120MiB} \
    run go test -run '^$' -bench BenchmarkControllerScale -benchtime 1x -timeout 60m ./hack/bench/
fi

go run ./hack/bench/report "$raw" | tee "$table"
cp "$raw" "$out/bench.txt"
cp "$table" "$out/table.txt"
cp "$table" hack/bench/table.txt
echo "raw: $raw; table: $table" >&2
