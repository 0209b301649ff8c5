package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCompare(t *testing.T) {
	for _, s := range []string{"value(k) = v", `value("a b)") != "x y"`, "version(k) > 0", "create(k) < 5", "mod(k) == 3", " VALUE ( k ) = v"} {
		if _, err := parseCompare(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for s, want := range map[string]string{
		"value k = v":      "no '('",
		"value(k = v":      "no ')'",
		"value(k) ~ v":     "unknown operator",
		"value(k) =":       "an operator and one value",
		"version(k) = one": "compares with an integer",
		"lease(k) = 1":     "unknown target",
	} {
		if _, err := parseCompare(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", s, err, want)
		}
	}
}

func TestParseOps(t *testing.T) {
	if args, err := splitArgs(`put "a b" "c\"d" e`); err != nil || !slices.Equal(args, []string{"put", "a b", `c"d`, "e"}) {
		t.Errorf("splitArgs: %q, %v", args, err)
	}
	if ops, err := parseOps("then", []string{"put k v", "get k", "del k"}); err != nil || len(ops) != 3 {
		t.Errorf("parseOps: %v, %v", ops, err)
	}
	for _, s := range []string{"put k", "get", "inc k", `put "k v`} {
		if _, err := parseOps("then", []string{s}); err == nil {
			t.Errorf("parseOps(%q) accepted", s)
		}
	}
}

func TestBenchFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "scan"}, `workload "scan"`},
		{[]string{"bench", "put", "--clients", "0"}, "--clients 0"},
		{[]string{"bench", "put", "--key-size", "0"}, "--key-size 0"},
		{[]string{"bench", "mixed", "--read-ratio", "2"}, "--read-ratio 2"},
		{[]string{"bench", "get", "--consistency", "x"}, "--consistency"},
		{[]string{"bench", "put", "--keys", "1001", "--key-size", "3"}, "give at least --key-size 4"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestBenchPercentiles(t *testing.T) {
	s := newBenchStats()
	for i := 1; i <= 100; i++ {
		s.record(time.Duration(i)*time.Millisecond, nil)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		got := s.percentile(p)
		if got < want || got > want+want/100+time.Microsecond {
			t.Errorf("p%v = %v, want %v within 1%%", p*100, got, want)
		}
	}
	if k := benchKey(42, 5); k != "00042" {
		t.Errorf("benchKey: %q", k)
	}
}
