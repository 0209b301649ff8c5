package sim

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A LatencyMatrix gives the round-trip time between named sites (cloud
// regions, data centres), in milliseconds. With one in
// NetworkConfig.Matrix the simulator places node i+1 at Sites[i] and
// delays each message by half the RTT between the sites of its two nodes.
//
// Invariant: RTTMs is len(Sites) × len(Sites), symmetric, zero on the
// diagonal, finite and non-negative; site names are distinct and
// non-empty.
type LatencyMatrix struct {
	Sites []string
	RTTMs [][]float64
}

// latencyMatrixSitesMax bounds the sites of one matrix (the simulator runs
// at most 64 nodes, one per site).
const latencyMatrixSitesMax = 64

// ParseLatencyMatrix reads a latency matrix in this text format:
//
//	# us-east-1 and eu-west-1, RTT in ms (comments run from # to the end of a line)
//	sites      us-east-1  eu-west-1  ap-northeast-1
//	us-east-1          0         81             145
//	eu-west-1         81          0             212
//	ap-northeast-1   145        212               0
//
// The first line that is not blank or a comment is "sites" followed by
// every site's name. Then comes one row per site, in any order: the site's
// name and its round-trip time in milliseconds (a decimal number) to each
// site, in the order of the sites line. The matrix must be complete (a row
// for every site, a value for every column), symmetric, zero on the
// diagonal and non-negative. name (a file name) prefixes error messages,
// which give the line at fault.
func ParseLatencyMatrix(r io.Reader, name string) (*LatencyMatrix, error) {
	m := &LatencyMatrix{}
	rowLine := map[int]int{} // site index -> line of its row
	var sitesLine int
	sc := bufio.NewScanner(r)
	lineNo := 0
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if m.Sites == nil {
			if fields[0] != "sites" {
				return nil, fail(lineNo, "want the sites line first (\"sites NAME NAME ...\"), got %q", fields[0])
			}
			names := fields[1:]
			if len(names) == 0 {
				return nil, fail(lineNo, "the sites line names no sites")
			}
			if len(names) > latencyMatrixSitesMax {
				return nil, fail(lineNo, "%d sites; at most %d", len(names), latencyMatrixSitesMax)
			}
			for i, s := range names {
				if slices.Contains(names[:i], s) {
					return nil, fail(lineNo, "site %q is named twice", s)
				}
			}
			m.Sites = names
			m.RTTMs = make([][]float64, len(names))
			sitesLine = lineNo
			continue
		}
		i := slices.Index(m.Sites, fields[0])
		if i < 0 {
			if fields[0] == "sites" {
				return nil, fail(lineNo, "a second sites line (the first is line %d)", sitesLine)
			}
			return nil, fail(lineNo, "unknown site %q: not on the sites line (line %d)", fields[0], sitesLine)
		}
		if prev, ok := rowLine[i]; ok {
			return nil, fail(lineNo, "a second row for site %q (the first is line %d)", m.Sites[i], prev)
		}
		vals := fields[1:]
		if len(vals) != len(m.Sites) {
			return nil, fail(lineNo, "row %q has %d values; want %d, one per site on the sites line", m.Sites[i], len(vals), len(m.Sites))
		}
		row := make([]float64, len(vals))
		for j, s := range vals {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fail(lineNo, "RTT %s→%s: %q is not a number of milliseconds", m.Sites[i], m.Sites[j], s)
			}
			if v < 0 {
				return nil, fail(lineNo, "RTT %s→%s is negative (%s ms)", m.Sites[i], m.Sites[j], s)
			}
			if i == j && v != 0 {
				return nil, fail(lineNo, "RTT %s→%s is %s ms; a site's RTT to itself must be 0", m.Sites[i], m.Sites[j], s)
			}
			if prev, ok := rowLine[j]; ok && m.RTTMs[j][i] != v {
				return nil, fail(lineNo, "RTT %s→%s is %s ms but %s→%s (line %d) is %s ms; the matrix must be symmetric",
					m.Sites[i], m.Sites[j], s, m.Sites[j], m.Sites[i], prev, formatMs(m.RTTMs[j][i]))
			}
			row[j] = v
		}
		m.RTTMs[i] = row
		rowLine[i] = lineNo
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if m.Sites == nil {
		return nil, fmt.Errorf("%s: no sites line; the file is empty or all comments", name)
	}
	var missing []string
	for i, s := range m.Sites {
		if _, ok := rowLine[i]; !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return nil, fail(lineNo, "no row for site(s) %s (sites line %d)", strings.Join(missing, ", "), sitesLine)
	}
	return m, nil
}

// Validate checks the matrix's invariant, for a matrix built in code.
func (m *LatencyMatrix) Validate() error {
	n := len(m.Sites)
	if n == 0 || n > latencyMatrixSitesMax {
		return fmt.Errorf("sim: latency matrix has %d sites; want 1..%d", n, latencyMatrixSitesMax)
	}
	if len(m.RTTMs) != n {
		return fmt.Errorf("sim: latency matrix has %d sites but %d rows", n, len(m.RTTMs))
	}
	for i, s := range m.Sites {
		if s == "" || strings.ContainsAny(s, " \t\n#") || slices.Contains(m.Sites[:i], s) {
			return fmt.Errorf("sim: latency matrix site %q is empty, repeated or contains space or #", s)
		}
		if len(m.RTTMs[i]) != n {
			return fmt.Errorf("sim: latency matrix row %q has %d values; want %d", s, len(m.RTTMs[i]), n)
		}
	}
	for i := range n {
		for j := range n {
			v := m.RTTMs[i][j]
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
				return fmt.Errorf("sim: latency matrix RTT %s→%s is %v; want a finite value >= 0", m.Sites[i], m.Sites[j], v)
			case i == j && v != 0:
				return fmt.Errorf("sim: latency matrix RTT %s→%s is %v; want 0", m.Sites[i], m.Sites[j], v)
			case v != m.RTTMs[j][i]:
				return fmt.Errorf("sim: latency matrix is not symmetric: %s→%s is %v, %s→%s is %v",
					m.Sites[i], m.Sites[j], v, m.Sites[j], m.Sites[i], m.RTTMs[j][i])
			}
		}
	}
	return nil
}

// Len is the number of sites.
func (m *LatencyMatrix) Len() int { return len(m.Sites) }

// Site returns the index of the named site.
func (m *LatencyMatrix) Site(name string) (int, bool) {
	i := slices.Index(m.Sites, name)
	return i, i >= 0
}

// RTT is the round-trip time between sites i and j, in milliseconds.
func (m *LatencyMatrix) RTT(i, j int) float64 { return m.RTTMs[i][j] }

// Select returns the matrix restricted to the named sites, in the order
// given.
func (m *LatencyMatrix) Select(names []string) (*LatencyMatrix, error) {
	if len(names) == 0 {
		return nil, errors.New("sim: no sites selected")
	}
	idx := make([]int, len(names))
	for k, s := range names {
		i, ok := m.Site(s)
		if !ok {
			return nil, fmt.Errorf("sim: unknown site %q; the matrix has %s", s, strings.Join(m.Sites, ", "))
		}
		if slices.Contains(names[:k], s) {
			return nil, fmt.Errorf("sim: site %q selected twice", s)
		}
		idx[k] = i
	}
	out := &LatencyMatrix{Sites: slices.Clone(names), RTTMs: make([][]float64, len(names))}
	for a, i := range idx {
		out.RTTMs[a] = make([]float64, len(names))
		for b, j := range idx {
			out.RTTMs[a][b] = m.RTTMs[i][j]
		}
	}
	return out, nil
}

// kthClosestRTT is the RTT from site i to the k-th closest other site (k
// from 1), or 0 for k = 0: the time a replica at i waits for k replies
// from the others.
func (m *LatencyMatrix) kthClosestRTT(i, k int) float64 {
	if k <= 0 {
		return 0
	}
	others := make([]float64, 0, len(m.Sites)-1)
	for j, v := range m.RTTMs[i] {
		if j != i {
			others = append(others, v)
		}
	}
	slices.Sort(others)
	return others[min(k, len(others))-1]
}

// String formats the matrix in the format ParseLatencyMatrix reads.
func (m *LatencyMatrix) String() string {
	var b strings.Builder
	w := len("sites")
	for _, s := range m.Sites {
		w = max(w, len(s))
	}
	fmt.Fprintf(&b, "%-*s", w, "sites")
	for _, s := range m.Sites {
		fmt.Fprintf(&b, "  %*s", max(len(s), 4), s)
	}
	b.WriteByte('\n')
	for i, s := range m.Sites {
		fmt.Fprintf(&b, "%-*s", w, s)
		for j, col := range m.Sites {
			fmt.Fprintf(&b, "  %*s", max(len(col), 4), formatMs(m.RTTMs[i][j]))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func formatMs(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

//go:embed wan/*.txt
var builtinMatrices embed.FS

// BuiltinLatencyMatrices lists the names of the matrices shipped in sim/wan
// ("aws5": five AWS regions), sorted.
func BuiltinLatencyMatrices() []string {
	entries, _ := fs.ReadDir(builtinMatrices, "wan")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".txt"))
	}
	slices.Sort(names)
	return names
}

// LoadLatencyMatrix reads a latency matrix from the file at path or, if
// there is no such file, the built-in matrix of that name (see
// BuiltinLatencyMatrices).
func LoadLatencyMatrix(path string) (*LatencyMatrix, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return ParseLatencyMatrix(bytes.NewReader(data), path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sim: reading latency matrix: %w", err)
	}
	if !strings.ContainsAny(path, `/\.`) {
		if data, berr := builtinMatrices.ReadFile("wan/" + path + ".txt"); berr == nil {
			return ParseLatencyMatrix(bytes.NewReader(data), "sim/wan/"+path+".txt")
		}
	}
	return nil, fmt.Errorf("sim: latency matrix %q: no such file, and no built-in matrix of that name (built in: %s)",
		path, strings.Join(BuiltinLatencyMatrices(), ", "))
}
