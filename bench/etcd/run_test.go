package etcd

import (
	"testing"
	"time"
)

const sample = `
Summary:
  Total:	0.2823 secs.
  Slowest:	0.0028 secs.
  Fastest:	0.0004 secs.
  Average:	0.0006 secs.
  Stddev:	0.0002 secs.
  Requests/sec:	1771.2223

Response time histogram:
  0.0004 [1]	|
  0.0028 [1]	|

Latency distribution:
  10% in 0.0005 secs.
  50% in 0.0005 secs.
  99% in 0.0015 secs.

Error distribution:
  [3]	rpc error: code = Unavailable desc = x
  [2]	context deadline exceeded
`

func TestParse(t *testing.T) {
	r, err := Parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	if r.Total != ms(282.3) || r.Average != ms(0.6) || r.P50 != ms(0.5) || r.P99 != ms(1.5) || r.Slowest != ms(2.8) || r.Throughput != 1771.2223 || r.Errors != 5 {
		t.Errorf("Parse = %+v", r)
	}
	if _, err := Parse("nothing here"); err == nil {
		t.Error("Parse of garbage succeeded")
	}
}
