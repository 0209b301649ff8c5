package etcd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Workload is one invocation of etcd's benchmark tool.
type Workload struct {
	Name    string
	Conns   int
	Clients int
	// Args are the subcommand and its flags (put ..., range ...).
	Args []string
}

// Result is what the benchmark tool reported, plus the servers' CPU.
type Result struct {
	Total      time.Duration // wall time of the run
	Throughput float64       // requests per second
	Average    time.Duration
	P50, P99   time.Duration
	Slowest    time.Duration
	Errors     int           // requests that failed (from "Error distribution")
	ServerCPU  time.Duration // user+system CPU of all members during the run
	Requests   int
}

// Run runs the benchmark tool for w against endpoints, bounded by
// timeout, and parses its summary.
func Run(tool string, endpoints []string, w Workload, timeout time.Duration) (Result, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append([]string{
		"--endpoints", strings.Join(endpoints, ","),
		"--conns", strconv.Itoa(w.Conns),
		"--clients", strconv.Itoa(w.Clients),
		"--precise",
	}, w.Args...)
	cmd := exec.CommandContext(ctx, tool, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = childAttr()
	err := cmd.Run()
	if err != nil {
		return Result{}, out.String(), fmt.Errorf("benchmark %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), lastLines(errb.String(), 10))
	}
	r, perr := Parse(out.String())
	if perr != nil {
		return r, out.String(), fmt.Errorf("benchmark %s: %v\n%s", strings.Join(args, " "), perr, out.String())
	}
	return r, out.String(), nil
}

// Parse reads the summary etcd's benchmark tool prints (with --precise):
//
//	Summary:
//	  Total:	1.234 secs.
//	  Slowest:	...
//	  Average:	0.0012 secs.
//	  Requests/sec:	8000.1
//	...
//	Latency distribution:
//	  50% in 0.0011 secs.
//	  99% in 0.0031 secs.
//	Error distribution:
//	  [12]	some error
func Parse(s string) (Result, error) {
	var r Result
	secs := func(v string) time.Duration {
		v = strings.TrimSuffix(strings.TrimSpace(v), "secs.")
		f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return time.Duration(f * float64(time.Second))
	}
	inErrors := false
	have := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, ":")
		switch {
		case line == "Error distribution:":
			inErrors = true
		case inErrors && strings.HasPrefix(line, "["):
			n, _ := strconv.Atoi(line[1:strings.IndexByte(line, ']')])
			r.Errors += n
		case ok && k == "Total":
			r.Total = secs(v)
			have++
		case ok && k == "Average":
			r.Average = secs(v)
			have++
		case ok && k == "Slowest":
			r.Slowest = secs(v)
		case ok && k == "Requests/sec":
			r.Throughput, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			have++
		case strings.HasPrefix(line, "50% in "):
			r.P50 = secs(strings.TrimPrefix(line, "50% in "))
		case strings.HasPrefix(line, "99% in "):
			r.P99 = secs(strings.TrimPrefix(line, "99% in "))
			have++
		}
	}
	if have < 4 {
		return r, fmt.Errorf("could not find Total, Average, Requests/sec and the 99%% latency in the output")
	}
	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
