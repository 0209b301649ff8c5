package etcd

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// keyState is what a member holds for one key: the number of writes since
// it was created (etcd's version, equal on every member under every
// protocol, unlike the revisions, which synod's EPaxos keeps per member)
// and a digest of its value.
type keyState struct {
	version int64
	value   [sha256.Size]byte
}

// CheckResult is what Check found.
type CheckResult struct {
	Keys int // keys on every member
	// Versions are the versions of the keys Check was asked about, in the
	// same order (0 for a key that does not exist).
	Versions []int64
}

// Check reads every key from every member with serializable ranges (so
// each member answers from its own store, without consensus) and compares
// the members: every key must exist on each with the same version and
// value. Members that are behind catch up, so it retries until they agree
// or timeout passes, and then reports the first difference. It also
// returns the versions of the keys in watch.
func (c *Cluster) Check(timeout time.Duration, watch ...string) (CheckResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		states := make([]map[string]keyState, len(c.Members))
		var err error
		for i, m := range c.Members {
			if states[i], err = readAll(ctx, m.Endpoint()); err != nil {
				break
			}
		}
		if err == nil {
			diff := compareStates(c.Members, states)
			if diff == "" {
				r := CheckResult{Keys: len(states[0])}
				for _, k := range watch {
					r.Versions = append(r.Versions, states[0][k].version)
				}
				return r, nil
			}
			err = fmt.Errorf("members disagree: %s", diff)
		}
		select {
		case <-ctx.Done():
			return CheckResult{}, fmt.Errorf("%s cluster after %v: %w (logs in %s)", c.System, timeout, err, c.Dir)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// readAll reads every key of the member at endpoint, in pages.
func readAll(ctx context.Context, endpoint string) (map[string]keyState, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: rpcTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	const page = 5000
	out := map[string]keyState{}
	from := "\x00"
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*rpcTimeout)
		resp, err := cli.Get(rctx, from, clientv3.WithFromKey(), clientv3.WithSerializable(), clientv3.WithLimit(page))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", endpoint, err)
		}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = keyState{version: kv.Version, value: sha256.Sum256(kv.Value)}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// compareStates describes the first differences between the members'
// states ("" if they are equal).
func compareStates(members []*Member, states []map[string]keyState) string {
	var diffs []string
	for i := 1; i < len(states); i++ {
		a, b := states[0], states[i]
		if len(a) != len(b) {
			diffs = append(diffs, fmt.Sprintf("%s has %d keys, %s %d", members[0].Name, len(a), members[i].Name, len(b)))
		}
		var keys []string
		for k := range a {
			keys = append(keys, k)
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		n := 0
		for _, k := range keys {
			sa, oka := a[k]
			sb, okb := b[k]
			if oka && okb && sa == sb {
				continue
			}
			if n++; n > 3 {
				break
			}
			diffs = append(diffs, fmt.Sprintf("key %q: %s %s, %s %s", k, members[0].Name, describe(sa, oka), members[i].Name, describe(sb, okb)))
		}
	}
	return strings.Join(diffs, "; ")
}

func describe(s keyState, ok bool) string {
	if !ok {
		return "missing"
	}
	return fmt.Sprintf("version %d value %x", s.version, s.value[:4])
}
