package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of the bench command's flags.
const (
	benchClientsMax  = 10000
	benchConnsMax    = 1000
	benchKeySizeMax  = 1 << 10
	benchValSizeMax  = 1 << 20
	benchKeysMax     = 10_000_000
	benchDurationMax = 24 * time.Hour
	// benchOpTimeout bounds one request.
	benchOpTimeout = 10 * time.Second
	// benchErrorsShown is how many distinct errors the report lists.
	benchErrorsShown = 5
)

type benchFlags struct {
	client     clientFlags
	clients    int
	conns      int
	keySize    int
	valSize    int
	keys       int
	duration   time.Duration
	readRatio  float64
	consistent string
	prefill    bool
}

func newBenchCommand() *cobra.Command {
	f := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench put|get|mixed",
		Short: "Load a cluster through etcd's API and report throughput and latency",
		Long: `Run a load against --endpoints for --duration and print the throughput and
the latency percentiles of each kind of operation.

  put    writes random values to random keys of the key space
  get    reads random keys (the key space is written first, unless
         --prefill=false)
  mixed  reads (--read-ratio of the operations) and writes

--clients goroutines issue requests, one at a time each, over --conns
gRPC connections (client i uses connection i mod --conns). Keys are
--key-size bytes, drawn uniformly from --keys distinct keys; values are
--val-size random bytes. Reads are linearizable unless --consistency s.

Latencies are bucketed with 1% resolution, so a percentile is accurate to
about 1%. Errors are counted and the first few distinct ones listed; a
failed request still counts in its latency.`,
		Example: `  synod bench put --endpoints http://127.0.0.1:2379 --clients 64 --conns 8 --duration 30s
  synod bench mixed --read-ratio 0.9 --val-size 1024`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"put", "get", "mixed"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.validate(args[0]); err != nil {
				return err
			}
			return runBench(cmd, f, args[0])
		},
	}
	fl := cmd.Flags()
	f.client.register(fl)
	fl.IntVar(&f.clients, "clients", 16, "concurrent clients (each with one request in flight)")
	fl.IntVar(&f.conns, "conns", 1, "gRPC connections the clients share")
	fl.IntVar(&f.keySize, "key-size", 8, "key size in bytes")
	fl.IntVar(&f.valSize, "val-size", 256, "value size in bytes")
	fl.IntVar(&f.keys, "keys", 1000, "number of distinct keys")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to run the load")
	fl.Float64Var(&f.readRatio, "read-ratio", 0.5, "share of reads in the mixed workload")
	fl.StringVar(&f.consistent, "consistency", "l", "read consistency: l (linearizable) or s (serializable)")
	fl.BoolVar(&f.prefill, "prefill", true, "write every key once before a get or mixed run")
	return cmd
}

func (f *benchFlags) validate(workload string) error {
	switch {
	case workload != "put" && workload != "get" && workload != "mixed":
		return fmt.Errorf("workload %q: want put, get or mixed", workload)
	case f.clients < 1 || f.clients > benchClientsMax:
		return fmt.Errorf("--clients %d: allowed 1..%d", f.clients, benchClientsMax)
	case f.conns < 1 || f.conns > benchConnsMax:
		return fmt.Errorf("--conns %d: allowed 1..%d", f.conns, benchConnsMax)
	case f.keySize < 1 || f.keySize > benchKeySizeMax:
		return fmt.Errorf("--key-size %d: allowed 1..%d", f.keySize, benchKeySizeMax)
	case f.valSize < 0 || f.valSize > benchValSizeMax:
		return fmt.Errorf("--val-size %d: allowed 0..%d", f.valSize, benchValSizeMax)
	case f.keys < 1 || f.keys > benchKeysMax:
		return fmt.Errorf("--keys %d: allowed 1..%d", f.keys, benchKeysMax)
	case f.duration <= 0 || f.duration > benchDurationMax:
		return fmt.Errorf("--duration %v: allowed up to %v", f.duration, benchDurationMax)
	case f.readRatio < 0 || f.readRatio > 1:
		return fmt.Errorf("--read-ratio %v: allowed 0..1", f.readRatio)
	case f.consistent != "l" && f.consistent != "s":
		return fmt.Errorf("--consistency %q: want l or s", f.consistent)
	case len(strconv.Itoa(f.keys-1)) > f.keySize:
		return fmt.Errorf("--keys %d do not fit in --key-size %d: give at least --key-size %d", f.keys, f.keySize, len(strconv.Itoa(f.keys-1)))
	}
	return nil
}

// benchKey returns key i of the key space: i in decimal, zero-padded to
// keySize bytes (validate checks that every key fits).
func benchKey(i, keySize int) string {
	return fmt.Sprintf("%0*d", keySize, i)
}

// benchValue returns n random printable bytes.
func benchValue(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func runBench(cmd *cobra.Command, f *benchFlags, workload string) error {
	out := cmd.OutOrStdout()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conns := make([]*clientv3.Client, f.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		c, err := f.client.client()
		if err != nil {
			return err
		}
		conns[i] = c
	}
	var readOpts []clientv3.OpOption
	if f.consistent == "s" {
		readOpts = append(readOpts, clientv3.WithSerializable())
	}
	if workload != "put" && f.prefill {
		start := time.Now()
		if err := benchPrefill(ctx, f, conns); err != nil {
			return err
		}
		fmt.Fprintf(out, "prefilled %d keys in %v\n", f.keys, time.Since(start).Round(time.Millisecond))
	}

	runCtx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	reads, writes := newBenchStats(), newBenchStats()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range f.clients {
		cli := conns[i%len(conns)]
		r := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
		wg.Go(func() {
			for runCtx.Err() == nil {
				key := benchKey(r.IntN(f.keys), f.keySize)
				read := workload == "get" || workload == "mixed" && r.Float64() < f.readRatio
				opCtx, opCancel := context.WithTimeout(runCtx, benchOpTimeout)
				t0 := time.Now()
				var err error
				if read {
					_, err = cli.Get(opCtx, key, readOpts...)
				} else {
					_, err = cli.Put(opCtx, key, benchValue(r, f.valSize))
				}
				took := time.Since(t0)
				opCancel()
				if runCtx.Err() != nil && err != nil {
					return // cut off by the end of the run, not a failure
				}
				if read {
					reads.record(took, err)
				} else {
					writes.record(took, err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		fmt.Fprintln(out, "interrupted")
	}
	fmt.Fprintf(out, "workload %s: %d clients over %d connections, %d keys of %d bytes, values of %d bytes, %v\n\n",
		workload, f.clients, f.conns, f.keys, f.keySize, f.valSize, elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\terrors\tops/s\tmean\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, s := range []struct {
		name string
		st   *benchStats
	}{{"put", writes}, {"get", reads}} {
		if s.st.count() > 0 {
			s.st.row(tw, s.name, elapsed)
		}
	}
	tw.Flush()
	writes.printErrors(out, "put")
	reads.printErrors(out, "get")
	if writes.count()+reads.count() == 0 {
		return errors.New("no request completed")
	}
	return nil
}

// benchPrefill writes every key of the key space once, with all clients.
func benchPrefill(ctx context.Context, f *benchFlags, conns []*clientv3.Client) error {
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for i := range min(f.clients, f.keys) {
		cli := conns[i%len(conns)]
		r := rand.New(rand.NewPCG(uint64(i), 1))
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= f.keys || ctx.Err() != nil || firstErr.Load() != nil {
					return
				}
				opCtx, cancel := context.WithTimeout(ctx, benchOpTimeout)
				_, err := cli.Put(opCtx, benchKey(k, f.keySize), benchValue(r, f.valSize))
				cancel()
				if err != nil {
					err = fmt.Errorf("prefilling key %d: %w", k, err)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// Latency buckets: bucket i holds latencies up to benchBucketMin ×
// benchBucketGrowth^i (1% apart), up to about 100 s.
const (
	benchBucketMin    = time.Microsecond
	benchBucketGrowth = 1.01
	benchBuckets      = 1900
)

// benchStats counts one kind of operation: a latency histogram, errors.
type benchStats struct {
	mu      sync.Mutex
	buckets [benchBuckets + 1]uint64
	n, errs uint64
	sum     time.Duration
	max     time.Duration
	// errSeen counts each distinct error message (at most
	// benchErrorsShown of them are kept).
	errSeen map[string]int
}

func newBenchStats() *benchStats { return &benchStats{errSeen: map[string]int{}} }

func benchBucket(d time.Duration) int {
	if d <= benchBucketMin {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(benchBucketMin)) / math.Log(benchBucketGrowth)))
	return min(i, benchBuckets)
}

func benchBucketBound(i int) time.Duration {
	return time.Duration(float64(benchBucketMin) * math.Pow(benchBucketGrowth, float64(i)))
}

func (s *benchStats) record(d time.Duration, err error) {
	i := benchBucket(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buckets[i]++
	s.n++
	s.sum += d
	s.max = max(s.max, d)
	if err != nil {
		s.errs++
		msg := err.Error()
		if _, ok := s.errSeen[msg]; ok || len(s.errSeen) < benchErrorsShown {
			s.errSeen[msg]++
		}
	}
}

func (s *benchStats) count() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// percentile returns the latency below which a share p of the
// operations fell (a bucket's upper bound; the maximum for the last).
func (s *benchStats) percentile(p float64) time.Duration {
	rank := uint64(math.Ceil(p * float64(s.n)))
	var cum uint64
	for i, c := range s.buckets {
		cum += c
		if cum >= rank && cum > 0 {
			return min(benchBucketBound(i), s.max)
		}
	}
	return s.max
}

func (s *benchStats) row(w io.Writer, name string, elapsed time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lat := func(d time.Duration) string {
		switch {
		case d < time.Millisecond:
			return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
		case d < time.Second:
			return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
		}
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	fmt.Fprintf(w, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, s.n, s.errs, float64(s.n)/elapsed.Seconds(),
		lat(s.sum/time.Duration(s.n)), lat(s.percentile(0.5)), lat(s.percentile(0.9)), lat(s.percentile(0.99)),
		lat(s.percentile(0.999)), lat(s.max))
}

func (s *benchStats) printErrors(w io.Writer, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for msg, n := range s.errSeen {
		fmt.Fprintf(w, "%s error (%d×): %s\n", name, n, msg)
	}
}
