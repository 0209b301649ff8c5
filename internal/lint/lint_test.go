package lint

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/synod-io/synod"

// purePackages are protocol cores and their shared vocabulary: deterministic
// state machines with no clock, randomness, I/O or goroutines of their own.
// goFiles does not descend into subdirectories, so a pure subpackage is
// listed on its own.
var purePackages = []string{"consensus", "raft", "kv", "paxos", "epaxos", "gossip", "gossip/store"}

// pureStdlib is everything a pure package may import from the standard
// library.
var pureStdlib = []string{
	"errors", "fmt", "sort", "slices", "maps", "strings", "strconv", "bytes",
	"math", "math/bits", "encoding/binary", "hash/crc32", "cmp",
}

// forbiddenInPure are named so that a violation message says why.
var forbiddenInPure = []string{
	"time", "math/rand", "math/rand/v2", "crypto/rand", "os", "net", "sync",
	"sync/atomic", "context", "log", "log/slog",
}

// repoRoot is two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// goFiles returns the non-test Go files directly in dir (no subdirectories).
func goFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		files = append(files, filepath.Join(dir, n))
	}
	return files
}

// fileImports parses a file's imports, and reports whether it contains a go
// statement.
func fileImports(t *testing.T, path string) (imports []string, goStmts []token.Position) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			t.Fatal(err)
		}
		imports = append(imports, p)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if g, ok := n.(*ast.GoStmt); ok {
			goStmts = append(goStmts, fset.Position(g.Pos()))
		}
		return true
	})
	return imports, goStmts
}

// checkPure returns one message per rule a pure package's file breaks.
func checkPure(t *testing.T, path string) []string {
	imports, goStmts := fileImports(t, path)
	var bad []string
	for _, p := range imports {
		switch {
		case slices.Contains(pureStdlib, p):
		case p == module+"/consensus":
		case strings.HasPrefix(p, module+"/") && strings.HasSuffix(p, "pb"):
			// generated message types
		case slices.Contains(forbiddenInPure, p):
			bad = append(bad, fmt.Sprintf("%s imports %q: pure packages get time, randomness and logging through their Config, never directly", path, p))
		default:
			bad = append(bad, fmt.Sprintf("%s imports %q, which is not on the pure-package allowlist (ARCHITECTURE.md)", path, p))
		}
	}
	for _, pos := range goStmts {
		bad = append(bad, fmt.Sprintf("%s: go statement in a pure package; the host owns all goroutines", pos))
	}
	return bad
}

func TestPurePackages(t *testing.T) {
	root := repoRoot(t)
	checked := 0
	for _, pkg := range purePackages {
		for _, f := range goFiles(t, filepath.Join(root, pkg)) {
			checked++
			for _, msg := range checkPure(t, f) {
				t.Error(msg)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no pure package files found; is the test running from internal/lint?")
	}
}

func TestSimAndNodeAreIndependent(t *testing.T) {
	root := repoRoot(t)
	pairs := [][2]string{{"sim", "node"}, {"node", "sim"}}
	for _, pr := range pairs {
		from, to := pr[0], pr[1]
		err := filepath.WalkDir(filepath.Join(root, from), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return filepath.SkipDir
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") {
				return nil
			}
			imports, _ := fileImports(t, path)
			for _, p := range imports {
				if p == module+"/"+to || strings.HasPrefix(p, module+"/"+to+"/") {
					t.Errorf("%s imports %q: sim and node must never import each other", path, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestLayering checks that a package never imports one from a higher layer.
func TestLayering(t *testing.T) {
	root := repoRoot(t)
	layer := func(importPath string) (int, bool) {
		rel, ok := strings.CutPrefix(importPath, module+"/")
		if !ok {
			return 0, false
		}
		top, _, _ := strings.Cut(rel, "/")
		switch top {
		case "consensus":
			return 0, true
		case "raft", "paxos", "epaxos", "gossip", "kv":
			return 1, true
		case "storage":
			return 2, true
		case "node", "transport", "sim":
			return 3, true
		case "server":
			return 4, true
		case "cmd":
			return 5, true
		}
		return 0, false
	}
	protocols := []string{"raft", "paxos", "epaxos", "gossip", "kv"}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bench", "testdata", "internal":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		self, ok := layer(module + "/" + filepath.ToSlash(rel))
		if !ok {
			return nil
		}
		selfTop, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		imports, _ := fileImports(t, path)
		for _, p := range imports {
			l, ok := layer(p)
			if !ok {
				continue
			}
			if l > self {
				t.Errorf("%s (layer %d) imports %q (layer %d): lower layers never import higher ones", path, self, p, l)
			}
			rest, _ := strings.CutPrefix(p, module+"/")
			top, _, _ := strings.Cut(rest, "/")
			if self == 1 && top != selfTop && slices.Contains(protocols, top) && slices.Contains(protocols, selfTop) {
				t.Errorf("%s imports %q: protocols never import each other", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCheckPureCatchesViolations shows the rule has teeth: a file that
// breaks it is reported.
func TestCheckPureCatchesViolations(t *testing.T) {
	dir := t.TempDir()
	src := `package bad

import (
	"fmt"
	"time"
	"github.com/synod-io/synod/sim"
)

func f() { go fmt.Println(time.Now()); _ = sim.X }
`
	path := filepath.Join(dir, "bad.go")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	msgs := checkPure(t, path)
	if len(msgs) != 3 {
		t.Fatalf("want 3 violations (time, sim, go statement), got %d: %q", len(msgs), msgs)
	}
}
