package node

import (
	"fmt"
	"strings"
)

// kubelet (and kube-proxy) add KUBE-* chains and jumps to them in the
// filter, nat and mangle tables of iptables and ip6tables. The rig saves the
// tables before the node starts and afterwards removes what is new: rules
// that jump to a new KUBE- chain, then those chains.

var iptablesTables = []string{"filter", "nat", "mangle"}

// iptablesSnapshot is `iptables-save` output per "<binary> <table>".
type iptablesSnapshot map[string]string

func saveIPTables() iptablesSnapshot {
	s := iptablesSnapshot{}
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range iptablesTables {
			out, err := run(bin+"-save", "-t", table)
			if err == nil {
				s[bin+" "+table] = out
			}
		}
	}
	return s
}

// kubeCleanup returns the iptables arguments (after `-t table`) that undo
// what appeared between before and after: deletions of new rules in chains
// that existed before and jump to a new KUBE- chain, then flush and delete of
// each new KUBE- chain.
func kubeCleanup(before, after string) [][]string {
	oldChains, _ := parseSave(before)
	newChains, rules := parseSave(after)
	oldRules := map[string]bool{}
	_, rb := parseSave(before)
	for _, r := range rb {
		oldRules[r] = true
	}
	added := map[string]bool{}
	var chains []string
	for _, c := range newChains {
		if !contains(oldChains, c) && strings.HasPrefix(c, "KUBE-") {
			added[c] = true
			chains = append(chains, c)
		}
	}
	var cmds [][]string
	for _, r := range rules {
		args := splitRule(r)
		if len(args) < 2 || oldRules[r] || added[args[1]] {
			continue
		}
		if target := jumpTarget(args); added[target] {
			cmds = append(cmds, append([]string{"-D"}, args[1:]...))
		}
	}
	for _, c := range chains {
		cmds = append(cmds, []string{"-F", c})
	}
	for _, c := range chains {
		cmds = append(cmds, []string{"-X", c})
	}
	return cmds
}

// parseSave returns the chains declared and the "-A ..." rule lines of one
// table's iptables-save output.
func parseSave(out string) (chains, rules []string) {
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				chains = append(chains, f[0])
			}
		case strings.HasPrefix(line, "-A "):
			rules = append(rules, strings.TrimSpace(line))
		}
	}
	return chains, rules
}

func jumpTarget(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-j" || args[i] == "-g" {
			return args[i+1]
		}
	}
	return ""
}

// splitRule splits an iptables-save rule line into arguments; iptables-save
// quotes arguments with spaces (comments) in double quotes.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQuote, have = !inQuote, true
		case c == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// restoreIPTables removes what the node added since before.
func restoreIPTables(before iptablesSnapshot) error {
	var errs []string
	for key, old := range before {
		bin, table, _ := strings.Cut(key, " ")
		now, err := run(bin+"-save", "-t", table)
		if err != nil {
			continue
		}
		for _, args := range kubeCleanup(old, now) {
			if _, err := run(bin, append([]string{"-w", "-t", table}, args...)...); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("iptables cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}
