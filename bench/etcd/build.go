// Package etcd runs synod and etcd side by side on loopback, three real
// processes each, and measures both with etcd's own benchmark tool
// (go.etcd.io/etcd/v3/tools/benchmark). cmd/etcdbench drives it.
//
// Binaries are built, not downloaded: etcd's server from the nested module
// bench/etcd/etcdserver (a main calling etcdmain.Main, at the version its
// go.mod pins), the benchmark tool in a throw-away module in the cache
// directory, and synod from the repository's working tree.
package etcd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	// BenchmarkModule and BenchmarkVersion name etcd's benchmark tool. The
	// tool lives in the go.etcd.io/etcd/v3 module, whose newest version on
	// the module proxy is v3.6.8; it speaks the same v3 API as the v3.7.3
	// server.
	BenchmarkModule  = "go.etcd.io/etcd/v3"
	BenchmarkPackage = "go.etcd.io/etcd/v3/tools/benchmark"
	BenchmarkVersion = "v3.6.8"
	// buildTimeout bounds each go command.
	buildTimeout = 10 * time.Minute
)

// goCmd runs the go command in dir with extra environment, bounded by
// buildTimeout, and returns its trimmed combined output.
func goCmd(dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("(cd %s && go %s): %v\n%s", dir, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// BuildEtcd builds etcd's server from the nested module
// <benchDir>/etcd/etcdserver into cacheDir/etcd-<version> and returns the
// path and the server module's version.
func BuildEtcd(benchDir, cacheDir string) (path, version string, err error) {
	dir := filepath.Join(benchDir, "etcd", "etcdserver")
	version, err = goCmd(dir, nil, "list", "-m", "-f", "{{.Version}}", "go.etcd.io/etcd/server/v3")
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", "", err
	}
	path = filepath.Join(cacheDir, "etcd-"+version)
	// go build is cheap when nothing changed; build to a temporary name
	// and rename, so concurrent runs never see half a binary.
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if _, err := goCmd(dir, nil, "build", "-o", tmp, "."); err != nil {
		return "", "", err
	}
	return path, version, os.Rename(tmp, path)
}

// BuildBenchmark builds etcd's benchmark tool at BenchmarkVersion into
// cacheDir/benchmark-<version>, unless it is there already. It cannot be
// "go install"ed (the module's go.mod has replace directives), so it is
// built in a throw-away module that requires it.
func BuildBenchmark(cacheDir string) (string, error) {
	path := filepath.Join(cacheDir, "benchmark-"+BenchmarkVersion)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(cacheDir, "build-benchmark-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte("module synod-bench-benchmark-tool\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	env := []string{"GOFLAGS=-mod=mod"}
	if _, err := goCmd(work, env, "get", BenchmarkPackage+"@"+BenchmarkVersion); err != nil {
		return "", err
	}
	tmp := filepath.Join(work, "benchmark")
	if _, err := goCmd(work, env, "build", "-o", tmp, BenchmarkPackage); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// BuildSynod builds ./cmd/synod of the repository at root into out.
func BuildSynod(root, out string) error {
	_, err := goCmd(root, nil, "build", "-o", out, "./cmd/synod")
	return err
}
