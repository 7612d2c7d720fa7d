// Command report reads `go test -bench` output of the stsbind benchmarks and
// prints one table of figures against DESIGN.md's performance targets.
//
//	go run ./hack/bench/report hack/bench/out/bench-*.txt
//
// A figure that ran several times (-count) is reported as its median. The
// exit status is 0 whatever the verdicts: the figures are for people.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// results maps a benchmark name without the -GOMAXPROCS suffix to its
// metrics, each unit holding every value seen.
type results map[string]map[string][]float64

var (
	benchLine  = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	configLine = regexp.MustCompile(`^([a-z][^\s:]*):\s+(.*)$`)
)

// config holds the benchstat configuration lines (cpus, goos, commit, ...),
// the last value of each.
var config = map[string]string{}

func parse(r io.Reader, into results) error {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		if m := configLine.FindStringSubmatch(s.Text()); m != nil {
			config[m[1]] = m[2]
			continue
		}
		m := benchLine.FindStringSubmatch(s.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(m[2])
		if into[m[1]] == nil {
			into[m[1]] = map[string][]float64{}
		}
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			into[m[1]][fields[i+1]] = append(into[m[1]][fields[i+1]], v)
		}
	}
	return s.Err()
}

// derive adds the figures computed from others: the p99 of pods without a
// binding over that of pods with one.
func (r results) derive() {
	match, ok := r.get("BenchmarkWebhookHTTPS/match", "p99-us")
	if !ok || match == 0 {
		return
	}
	for _, name := range []string{"no-binding", "no-binding-distinct-sa"} {
		bench := "BenchmarkWebhookHTTPS/" + name
		if p99, ok := r.get(bench, "p99-us"); ok {
			r[bench]["p99-vs-match"] = []float64{p99 / match}
		}
	}
}

func (r results) get(bench, unit string) (float64, bool) {
	vs := r[bench][unit]
	if len(vs) == 0 {
		return 0, false
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	return vs[len(vs)/2], true
}

// row is one line of the table: a figure, its target and a verdict.
type row struct {
	figure, target, measured, verdict string
}

// check compares a figure with a target. ok nil means the figure has no
// target of its own and is shown for context.
type check struct {
	figure string
	bench  string
	unit   string
	scale  float64 // multiply the stored value (e.g. ns -> µs)
	format string
	target string
	ok     func(float64) bool
}

func below(limit float64) func(float64) bool { return func(v float64) bool { return v < limit } }
func equal(want float64) func(float64) bool  { return func(v float64) bool { return v == want } }

func checks(r results) []check {
	cs := []check{
		{"mutation, 1 binding", "BenchmarkMutatePod/bindings=1", "ns/op", 1e-3, "%.1f µs", "< 20 µs", below(20)},
		{"mutation, 1 binding", "BenchmarkMutatePod/bindings=1", "allocs/op", 1, "%.0f allocs", "a few dozen (< 50)", below(50)},
		{"mutation, 5 bindings", "BenchmarkMutatePod/bindings=5", "ns/op", 1e-3, "%.1f µs", "", nil},
		{"mutation, 5 bindings", "BenchmarkMutatePod/bindings=5", "allocs/op", 1, "%.0f allocs", "", nil},
		{"HTTP admission handler, 1 container, 1 Files binding", "BenchmarkAdmission/http", "instr/op", 1e-6, "%.2f M instructions", "< 0.8 M", below(0.8)},
		{"HTTP admission handler, 1 container, 1 Files binding", "BenchmarkAdmission/http", "ns/op", 1e-3, "%.0f µs", "", nil},
		{"admission handler (decode, bindings, mutation, patch)", "BenchmarkAdmission/handler", "instr/op", 1e-6, "%.2f M instructions", "", nil},
		{"patch of the changed parts (podPatch)", "BenchmarkAdmission/patch", "instr/op", 1e-6, "%.2f M instructions", "", nil},
		{"before: typed defaulter, whole-pod diff, over HTTP", "BenchmarkAdmission/typed-defaulter-http", "instr/op", 1e-6, "%.2f M instructions", "", nil},
		{"before: typed defaulter, whole-pod diff, handler", "BenchmarkAdmission/typed-defaulter", "instr/op", 1e-6, "%.2f M instructions", "", nil},
		{"bindings lookup alone: one namespace List (envtest, loopback)", "BenchmarkLookup/bound", "ns/op", 1e-3, "%.0f µs", "", nil},
	}
	for _, c := range []struct{ name, label string }{
		{"match", "pod with a binding"},
		{"no-binding", "pod without a binding"},
		{"no-binding-distinct-sa", "pod without a binding, 1,000 SAs"},
		{"baseline-static-https", "baseline: static HTTPS answer"},
	} {
		bench := "BenchmarkWebhookHTTPS/" + c.name
		rate, _ := r.get(bench, "reviews/s")
		label := fmt.Sprintf("webhook HTTPS, %s, %.0f/s", c.label, rate)
		var p99ok, errOK func(float64) bool
		target, errTarget := "", ""
		if c.name != "baseline-static-https" {
			p99ok, errOK, target, errTarget = below(2), equal(0), "< 2 ms", "0"
		}
		cs = append(cs,
			check{label + ": p50", bench, "p50-us", 1e-3, "%.2f ms", "", nil},
			check{label + ": p99", bench, "p99-us", 1e-3, "%.2f ms", target, p99ok},
			check{label + ": max", bench, "max-us", 1e-3, "%.2f ms", "", nil},
			check{label + ": errors", bench, "errors", 1, "%.0f", errTarget, errOK},
		)
		if c.name == "baseline-static-https" {
			continue
		}
		listTarget, listOK := "", (func(float64) bool)(nil)
		if c.name != "match" {
			listTarget, listOK = "far fewer than 1 (< 0.5)", below(0.5)
			cs = append(cs, check{label + ": p99 / p99 of a pod with a binding", bench, "p99-vs-match", 1, "%.2f×", "≤ 1.5×", func(v float64) bool { return v <= 1.5 }})
		}
		cs = append(cs,
			check{label + ": binding Lists per review", bench, "binding-lists/review", 1, "%.3f", listTarget, listOK},
			check{label + ": other API requests per review", bench, "other-api-requests/review", 1, "%.3f", "", nil},
		)
	}
	for _, c := range []struct{ unit, label, format string }{
		{"stripped-heap-MiB", "pod cache (missed-pods report), stripped: heap", "%.1f MiB"},
		{"stripped-heap-B/pod", "pod cache, stripped: heap per pod", "%.0f B"},
		{"stripped-RSS-growth-MiB", "pod cache, stripped: RSS growth while filling", "%.0f MiB"},
		{"whole-heap-MiB", "pod cache, whole pods (for comparison): heap", "%.1f MiB"},
		{"whole-RSS-growth-MiB", "pod cache, whole pods: RSS growth while filling", "%.0f MiB"},
	} {
		pods, _ := r.get("BenchmarkPodCache", "pods")
		cs = append(cs, check{fmt.Sprintf("%s, %.0f pods", c.label, pods), "BenchmarkPodCache", c.unit, 1, c.format, "", nil})
	}
	var scales []string
	for name := range r {
		if n, ok := strings.CutPrefix(name, "BenchmarkControllerScale/bindings="); ok {
			scales = append(scales, n)
		}
	}
	// "10000" or "10000/gomemlimit=180MiB": by number, then name.
	slices.SortFunc(scales, func(a, b string) int {
		an, _, _ := strings.Cut(a, "/")
		bn, _, _ := strings.Cut(b, "/")
		x, _ := strconv.Atoi(an)
		y, _ := strconv.Atoi(bn)
		if x != y {
			return x - y
		}
		return strings.Compare(a, b)
	})
	for _, n := range scales {
		bench := "BenchmarkControllerScale/bindings=" + n
		p := n + " bindings: "
		qps, _ := r.get(bench, "sts-qps")
		burst, _ := r.get(bench, "sts-burst")
		kube, _ := r.get(bench, "kube-qps")
		if count, limit, ok := strings.Cut(n, "/"); ok {
			p = fmt.Sprintf("%s bindings, %s: ", count, limit)
		}
		cs = append(cs,
			check{p + "(a) all Ready after", bench, "ready-s", 1, "%.1f s", "< 60 s", below(60)},
			check{fmt.Sprintf("%s(a) STS limit %.0f/s, burst %.0f, alone needs", p, qps, burst), bench, "sts-limit-bound-s", 1, "%.1f s", "", nil},
			check{fmt.Sprintf("%s(a) API requests per new binding (client limit %.0f/s per resource)", p, kube), bench, "api-requests/binding", 1, "%.3f", "≤ 4", func(v float64) bool { return v <= 4 }},
			check{p + "(a) API requests per new binding, with the per-process ones", bench, "api-requests-all/binding", 1, "%.3f", "", nil},
			check{p + "(a) API reads per new binding", bench, "api-reads/binding", 1, "%.3f", "", nil},
			check{p + "(a) STS calls per binding (credentials)", bench, "sts-calls/binding", 1, "%.3f", "1", equal(1)},
			check{p + "(a) GetCallerIdentity per new binding", bench, "identity-calls/binding", 1, "%.3f", "", nil},
			check{p + "(a) CPU per new binding: API server", bench, "kube-apiserver-cpu-ms/binding", 1, "%.1f ms", "", nil},
			check{p + "(a) CPU per new binding: etcd", bench, "etcd-cpu-ms/binding", 1, "%.1f ms", "", nil},
			check{p + "(a) CPU per new binding: controller", bench, "controller-cpu-ms/binding", 1, "%.1f ms", "", nil},
			check{p + "(a) CPU per new binding: harness (test STS, Ready count)", bench, "harness-cpu-ms/binding", 1, "%.1f ms", "", nil},
			check{p + "controller process, idle over an empty cluster: RSS", bench, "idle-RSS-MiB", 1, "%.0f MiB", "", nil},
			check{p + "(a) controller process: peak RSS (VmHWM)", bench, "peak-RSS-MiB", 1, "%.0f MiB", "< 150 MiB", below(150)},
			check{p + "(b) restarted controller process: peak RSS", bench, "restart-peak-RSS-MiB", 1, "%.0f MiB", "< 150 MiB", below(150)},
			check{p + "(c) after a refresh cycle: peak RSS", bench, "refresh-peak-RSS-MiB", 1, "%.0f MiB", "< 150 MiB", below(150)},
			check{p + "RSS per binding above idle (largest peak)", bench, "RSS-KiB/binding", 1, "%.1f KiB", "", nil},
			check{p + "(b) restart: STS calls", bench, "restart-sts-calls", 1, "%.0f", "0", equal(0)},
			check{p + "(b) restart: all reconciled after", bench, "restart-reconciled-s", 1, "%.1f s", "< 20 s", below(20)},
			check{p + "(b) restart: API writes", bench, "restart-api-writes", 1, "%.0f", "0", equal(0)},
			check{p + "(c) refresh: STS calls per binding, min", bench, "refresh-sts-calls/binding-min", 1, "%.0f", "1", equal(1)},
			check{p + "(c) refresh: STS calls per binding, max", bench, "refresh-sts-calls/binding-max", 1, "%.0f", "1", equal(1)},
			check{p + "(c) refresh: Secret writes per binding", bench, "refresh-secret-writes/binding", 1, "%.3f", "1", equal(1)},
			check{p + "(c) refresh: API requests per binding", bench, "refresh-api-requests/binding", 1, "%.3f", "", nil},
		)
	}
	return cs
}

func main() {
	r := results{}
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		err = parse(f, r)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, path+":", err)
			os.Exit(2)
		}
	}
	if len(r) == 0 {
		fmt.Fprintln(os.Stderr, "report: no benchmark results in", os.Args[1:])
		os.Exit(2)
	}
	r.derive()
	var rows []row
	pass, fail := 0, 0
	for _, c := range checks(r) {
		v, ok := r.get(c.bench, c.unit)
		if !ok {
			continue
		}
		v *= c.scale
		verdict := "-"
		if c.ok != nil {
			if c.ok(v) {
				verdict, pass = "pass", pass+1
			} else {
				verdict, fail = "FAIL", fail+1
			}
		}
		target := c.target
		if target == "" {
			target = "-"
		}
		rows = append(rows, row{c.figure, target, fmt.Sprintf(c.format, v), verdict})
	}
	cpus := config["cpus"]
	if cpus == "" {
		cpus = strconv.Itoa(runtime.NumCPU()) + " (this machine's)"
	}
	fmt.Printf("stsbind benchmarks: %s CPUs, %s memory, %s, commit %s; medians of the runs in %s\n\n",
		cpus, orUnknown(config["mem"]), orUnknown(config["cpu"]), orUnknown(config["commit"]), strings.Join(os.Args[1:], " "))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FIGURE\tTARGET\tMEASURED\tRESULT")
	for _, rw := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", rw.figure, rw.target, rw.measured, rw.verdict)
	}
	w.Flush()
	fmt.Printf("\n%d met, %d missed\n", pass, fail)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
