package sim_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/synod-io/synod/sim"
)

const goodMatrix = `# three regions
  # an indented comment

sites   a     b     c     # trailing comment
c       30.5  20    0
a       0     10    30.5
b       10    0     20
`

func TestParseLatencyMatrix(t *testing.T) {
	m, err := sim.ParseLatencyMatrix(strings.NewReader(goodMatrix), "good.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := &sim.LatencyMatrix{
		Sites: []string{"a", "b", "c"},
		RTTMs: [][]float64{{0, 10, 30.5}, {10, 0, 20}, {30.5, 20, 0}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("parsed %+v; want %+v", m, want)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	// String writes the format back.
	again, err := sim.ParseLatencyMatrix(strings.NewReader(m.String()), "string")
	if err != nil || !reflect.DeepEqual(again, m) {
		t.Fatalf("round trip through String: %v, %+v\n%s", err, again, m.String())
	}
}

func TestParseLatencyMatrixErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty", "# nothing\n\n", "bad.txt: no sites line"},
		{"rows before sites", "a 0 1\n", "bad.txt:1: want the sites line first"},
		{"no site names", "sites\n", "bad.txt:1: the sites line names no sites"},
		{"site named twice", "sites a b a\n", `bad.txt:1: site "a" is named twice`},
		{"unknown site", "sites a b\na 0 1\nx 1 0\n", `bad.txt:3: unknown site "x"`},
		{"second sites line", "sites a b\nsites a b\n", "bad.txt:2: a second sites line (the first is line 1)"},
		{"row twice", "sites a b\na 0 1\na 0 1\n", `bad.txt:3: a second row for site "a" (the first is line 2)`},
		{"missing entry", "sites a b c\na 0 1 2\nb 1 0\nc 2 1 0\n", `bad.txt:3: row "b" has 2 values; want 3`},
		{"extra entry", "sites a b\na 0 1 2\n", `bad.txt:2: row "a" has 3 values; want 2`},
		{"missing row", "sites a b c\na 0 1 2\n\nc 2 1 0\n", "bad.txt:4: no row for site(s) b (sites line 1)"},
		{"asymmetric", "sites a b c\na 0 1 2\nb 1 0 3\nc 2 4 0\n", "bad.txt:4: RTT c→b is 4 ms but b→c (line 3) is 3 ms; the matrix must be symmetric"},
		{"negative", "sites a b\na 0 -5\nb -5 0\n", "bad.txt:2: RTT a→b is negative (-5 ms)"},
		{"not a number", "sites a b\na 0 fast\n", `bad.txt:2: RTT a→b: "fast" is not a number`},
		{"infinite", "sites a b\na 0 Inf\n", `bad.txt:2: RTT a→b: "Inf" is not a number`},
		{"diagonal", "sites a b\na 3 1\n", "bad.txt:2: RTT a→a is 3 ms; a site's RTT to itself must be 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.ParseLatencyMatrix(strings.NewReader(tt.text), "bad.txt")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want an error containing %q, got %v", tt.want, err)
			}
		})
	}
}

func TestLatencyMatrixValidate(t *testing.T) {
	bad := []*sim.LatencyMatrix{
		{},
		{Sites: []string{"a", "b"}, RTTMs: [][]float64{{0, 1}}},
		{Sites: []string{"a", "b"}, RTTMs: [][]float64{{0, 1}, {2, 0}}},
		{Sites: []string{"a", "a"}, RTTMs: [][]float64{{0, 1}, {1, 0}}},
		{Sites: []string{"a b"}, RTTMs: [][]float64{{0}}},
		{Sites: []string{"a"}, RTTMs: [][]float64{{1}}},
	}
	for _, m := range bad {
		if err := m.Validate(); err == nil {
			t.Errorf("%+v: Validate accepted it", m)
		}
	}
}

func TestLoadLatencyMatrix(t *testing.T) {
	if got := sim.BuiltinLatencyMatrices(); !reflect.DeepEqual(got, []string{"aws5"}) {
		t.Fatalf("built-in matrices %v", got)
	}
	m, err := sim.LoadLatencyMatrix("aws5")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "sa-east-1"}; !reflect.DeepEqual(m.Sites, want) {
		t.Fatalf("aws5 sites %v; want %v", m.Sites, want)
	}
	path := filepath.Join(t.TempDir(), "m.txt")
	if err := os.WriteFile(path, []byte(goodMatrix), 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err := sim.LoadLatencyMatrix(path); err != nil || m.Len() != 3 {
		t.Fatalf("loading a file: %v, %v", m, err)
	}
	if err := os.WriteFile(path, []byte("sites a\nb 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.LoadLatencyMatrix(path); err == nil || !strings.Contains(err.Error(), path+":2: unknown site") {
		t.Fatalf("a bad file: %v", err)
	}
	if _, err := sim.LoadLatencyMatrix("no-such-matrix"); err == nil || !strings.Contains(err.Error(), "built in: aws5") {
		t.Fatalf("an unknown name: %v", err)
	}
}

func TestLatencyMatrixSelect(t *testing.T) {
	m, err := sim.ParseLatencyMatrix(strings.NewReader(goodMatrix), "good.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Select([]string{"c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	want := &sim.LatencyMatrix{Sites: []string{"c", "a"}, RTTMs: [][]float64{{0, 30.5}, {30.5, 0}}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("Select = %+v; want %+v", s, want)
	}
	for _, names := range [][]string{{"a", "z"}, {"a", "a"}, nil} {
		if _, err := m.Select(names); err == nil {
			t.Errorf("Select(%v) succeeded", names)
		}
	}
}

func TestPredictWAN(t *testing.T) {
	m, err := sim.LoadLatencyMatrix("aws5")
	if err != nil {
		t.Fatal(err)
	}
	// Five sites, leader at us-east-1 (index 0): its RTTs to the others
	// are 88, 81, 145, 120, so a majority (itself and two more) waits for
	// the second closest, 88 ms.
	p := sim.PredictWAN(m, false, 3, 0) // clients at ap-northeast-1, 145 ms from the leader
	if p.CommitMs != 145.0/2+88 || p.ExecuteMs != 145+88+0.5 {
		t.Errorf("leader-based prediction at ap-northeast-1: %+v", p)
	}
	// EPaxos at sa-east-1: RTTs 120, 183, 191, 257; a fast quorum of 3
	// waits for the second closest (183), the slow path twice that.
	p = sim.PredictWAN(m, true, 4, 0)
	if p.CommitMs != 183 || p.SlowCommitMs != 2*183 || p.ExecuteMs != 183.5 {
		t.Errorf("EPaxos prediction at sa-east-1: %+v", p)
	}
}
