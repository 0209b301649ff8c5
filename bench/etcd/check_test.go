package etcd

import (
	"strings"
	"testing"
)

func TestCompareStates(t *testing.T) {
	ms := []*Member{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	s := func(kv map[string]int64) map[string]keyState {
		out := map[string]keyState{}
		for k, v := range kv {
			out[k] = keyState{version: v}
		}
		return out
	}
	same := s(map[string]int64{"x": 1, "y": 2})
	if d := compareStates(ms, []map[string]keyState{same, s(map[string]int64{"x": 1, "y": 2}), s(map[string]int64{"x": 1, "y": 2})}); d != "" {
		t.Errorf("equal states: %s", d)
	}
	d := compareStates(ms, []map[string]keyState{same, s(map[string]int64{"x": 1, "y": 3}), s(map[string]int64{"x": 1})})
	for _, want := range []string{`key "y": a version 2`, "b version 3", "a has 2 keys, c 1", "c missing"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff %q lacks %q", d, want)
		}
	}
}
