// Package bench holds the stsbind benchmarks that need a real control plane:
// the pod webhook over HTTPS under a fixed-rate load, and the credential
// controller at scale against envtest and the in-test STS. `make bench` runs
// them with the mutation benchmark of package webhook and prints a table
// against the targets in DESIGN.md (hack/bench/report).
//
// The figures are wall-clock figures of one machine: they are reported, never
// asserted. The tests of this package run the same harness at a tiny scale and
// assert only counts (STS calls, Secret writes, errors), so `make test` keeps
// the harness working without timing anything.
//
// Scale is opt-in: without STSBIND_BENCH_SCALE the benchmarks run tiny. With
// it, the webhook load runs at 1,000 reviews/s for 10 s per case and the
// controller benchmark creates STSBIND_BENCH_SCALE bindings.
package bench
