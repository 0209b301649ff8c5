package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clientFlags are the connection flags of the commands that talk to a
// cluster through etcd's client (kv, status, bench), named as etcdctl's.
type clientFlags struct {
	endpoints      []string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	tls            clientTLSFlags // see tls.go
}

func (f *clientFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&f.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "client URLs of the cluster's members (comma-separated; https:// for TLS)")
	fl.DurationVar(&f.dialTimeout, "dial-timeout", 2*time.Second, "timeout for connecting to an endpoint")
	fl.DurationVar(&f.commandTimeout, "command-timeout", 5*time.Second, "timeout for one request")
	f.tls.register(fl)
}

// client connects etcd's client to the endpoints.
func (f *clientFlags) client() (*clientv3.Client, error) {
	if len(f.endpoints) == 0 {
		return nil, errors.New("--endpoints is empty")
	}
	tlsCfg, err := f.tls.config(f.endpoints)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   f.endpoints,
		DialTimeout: f.dialTimeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", strings.Join(f.endpoints, ","), err)
	}
	return cli, nil
}

// withClient runs fn with a client and a context bounded by the command
// timeout.
func (f *clientFlags) withClient(cmd *cobra.Command, fn func(ctx context.Context, cli *clientv3.Client) error) error {
	cli, err := f.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.commandTimeout)
	defer cancel()
	return fn(ctx, cli)
}

func newKVCommand() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read and write keys in a cluster (put, get, del, watch, txn)",
		Long: `Read and write keys through etcd's v3 API, as etcdctl does. Each
subcommand connects to --endpoints; https:// endpoints use TLS (--cacert,
--cert and --key for servers that verify clients).`,
		Example: `  synod kv put greeting hello
  synod kv get greeting
  synod kv get --prefix gr
  synod kv del greeting
  synod kv watch --prefix gr
  synod kv txn --compare 'value(greeting) = hello' --then 'put greeting bye' --else 'get greeting'
  synod kv --endpoints https://10.0.0.1:2379 --cacert ca.pem --cert me.pem --key me-key.pem get k`,
	}
	f.register(cmd.PersistentFlags())
	cmd.AddCommand(newKVPutCommand(f), newKVGetCommand(f), newKVDelCommand(f), newKVWatchCommand(f), newKVTxnCommand(f))
	return cmd
}

func newKVPutCommand(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Set a key's value",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
				if _, err := cli.Put(ctx, args[0], args[1]); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "OK")
				return nil
			})
		},
	}
}

func newKVGetCommand(f *clientFlags) *cobra.Command {
	var prefix, keysOnly, serializable bool
	var limit int64
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key and its value (or every key with a prefix)",
		Long: `Print each key found and its value, one per line, as etcdctl does.
Reads are linearizable unless --serializable.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := []clientv3.OpOption{clientv3.WithLimit(limit)}
			if prefix {
				opts = append(opts, clientv3.WithPrefix())
			}
			if keysOnly {
				opts = append(opts, clientv3.WithKeysOnly())
			}
			if serializable {
				opts = append(opts, clientv3.WithSerializable())
			}
			return f.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
				resp, err := cli.Get(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				printGet(cmd.OutOrStdout(), resp, keysOnly)
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&prefix, "prefix", false, "get every key with KEY as prefix")
	fl.BoolVar(&keysOnly, "keys-only", false, "print only the keys")
	fl.BoolVar(&serializable, "serializable", false, "serve the read from the member's local state (may be stale)")
	fl.Int64Var(&limit, "limit", 0, "print at most this many keys (0: no limit)")
	return cmd
}

func printGet(w io.Writer, resp *clientv3.GetResponse, keysOnly bool) {
	for _, kv := range resp.Kvs {
		fmt.Fprintln(w, string(kv.Key))
		if !keysOnly {
			fmt.Fprintln(w, string(kv.Value))
		}
	}
}

func newKVDelCommand(f *clientFlags) *cobra.Command {
	var prefix bool
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "Delete a key (or every key with a prefix) and print how many were deleted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []clientv3.OpOption
			if prefix {
				opts = append(opts, clientv3.WithPrefix())
			}
			return f.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
				resp, err := cli.Delete(ctx, args[0], opts...)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), resp.Deleted)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "delete every key with KEY as prefix")
	return cmd
}

// watchUnsupported is printed when the server does not serve Watch.
const watchUnsupported = "watch not supported yet"

func newKVWatchCommand(f *clientFlags) *cobra.Command {
	var prefix bool
	cmd := &cobra.Command{
		Use:   "watch KEY",
		Short: "Print changes to a key (or a prefix) until interrupted",
		Long: `Print each change as etcdctl does: PUT or DELETE, the key, and for a
PUT the new value, one per line. Runs until interrupted (SIGINT).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := f.client()
			if err != nil {
				return err
			}
			defer cli.Close()
			opts := []clientv3.OpOption{}
			if prefix {
				opts = append(opts, clientv3.WithPrefix())
			}
			ctx, stop := signal.NotifyContext(clientv3.WithRequireLeader(cmd.Context()), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return printWatch(ctx, cmd.OutOrStdout(), cli.Watch(ctx, args[0], opts...))
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "watch every key with KEY as prefix")
	return cmd
}

// printWatch prints the events from wch until ctx ends or the watch does.
func printWatch(ctx context.Context, w io.Writer, wch clientv3.WatchChan) error {
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if status.Code(err) == codes.Unimplemented || strings.Contains(err.Error(), "not supported") {
				fmt.Fprintln(w, watchUnsupported)
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch: %w", err)
		}
		for _, ev := range resp.Events {
			fmt.Fprintln(w, ev.Type.String())
			fmt.Fprintln(w, string(ev.Kv.Key))
			if ev.Type == clientv3.EventTypePut {
				fmt.Fprintln(w, string(ev.Kv.Value))
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("watch: the server ended the watch")
}

func newKVTxnCommand(f *clientFlags) *cobra.Command {
	var compares, thens, elses []string
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Run a transaction: if the comparisons hold, the --then operations, else the --else ones",
		Long: `Run one transaction atomically. Each flag may repeat.

  --compare 'TARGET(KEY) OP VALUE'
      TARGET is value, version, create (the key's create revision) or mod
      (its last modification revision); OP is =, !=, < or >. VALUE is a
      string for value and an integer for the others. synod accepts one
      comparison per transaction. A missing key has version 0.
  --then 'OP' and --else 'OP', where OP is one of
      put KEY VALUE
      get KEY
      del KEY

A KEY or VALUE with spaces or quotes is written as a Go string literal in
double quotes: --then 'put greeting "hello, world"'.

The command prints SUCCESS or FAILURE (which branch ran), then each
operation's result as put, get and del print theirs.`,
		Example: `  synod kv txn --compare 'value(k) = v' --then 'put k v2' --else 'get k'
  synod kv txn --compare 'version(lock) = 0' --then 'put lock me' --else 'get lock'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cmps []clientv3.Cmp
			for _, s := range compares {
				c, err := parseCompare(s)
				if err != nil {
					return err
				}
				cmps = append(cmps, c)
			}
			thenOps, err := parseOps("then", thens)
			if err != nil {
				return err
			}
			elseOps, err := parseOps("else", elses)
			if err != nil {
				return err
			}
			return f.withClient(cmd, func(ctx context.Context, cli *clientv3.Client) error {
				resp, err := cli.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
				if err != nil {
					return err
				}
				printTxn(cmd.OutOrStdout(), resp)
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&compares, "compare", nil, "a comparison: 'TARGET(KEY) OP VALUE' (see above)")
	fl.StringArrayVar(&thens, "then", nil, "an operation run if the comparisons hold: 'put K V', 'get K' or 'del K'")
	fl.StringArrayVar(&elses, "else", nil, "an operation run otherwise")
	return cmd
}

func printTxn(w io.Writer, resp *clientv3.TxnResponse) {
	if resp.Succeeded {
		fmt.Fprintln(w, "SUCCESS")
	} else {
		fmt.Fprintln(w, "FAILURE")
	}
	for _, r := range resp.Responses {
		fmt.Fprintln(w)
		switch {
		case r.GetResponsePut() != nil:
			fmt.Fprintln(w, "OK")
		case r.GetResponseRange() != nil:
			printGet(w, (*clientv3.GetResponse)(r.GetResponseRange()), false)
		case r.GetResponseDeleteRange() != nil:
			fmt.Fprintln(w, r.GetResponseDeleteRange().Deleted)
		}
	}
}

// parseCompare parses 'TARGET(KEY) OP VALUE'.
func parseCompare(s string) (clientv3.Cmp, error) {
	bad := func(why string) (clientv3.Cmp, error) {
		return clientv3.Cmp{}, fmt.Errorf("--compare %q: %s; want 'TARGET(KEY) OP VALUE', TARGET value, version, create or mod, OP =, !=, < or >", s, why)
	}
	target, rest, ok := strings.Cut(strings.TrimSpace(s), "(")
	if !ok {
		return bad("no '('")
	}
	// The key may be quoted, and a quoted key may hold ')'.
	var key string
	rest = strings.TrimLeft(rest, " ")
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return bad("bad quoted key")
		}
		key, _ = strconv.Unquote(q)
		rest = strings.TrimLeft(rest[len(q):], " ")
		if !strings.HasPrefix(rest, ")") {
			return bad("no ')' after the key")
		}
		rest = rest[1:]
	} else {
		key, rest, ok = strings.Cut(rest, ")")
		if !ok {
			return bad("no ')'")
		}
		key = strings.TrimSpace(key)
	}
	fields, err := splitArgs(rest)
	if err != nil {
		return bad(err.Error())
	}
	if len(fields) != 2 {
		return bad("want an operator and one value after the key")
	}
	op, val := fields[0], fields[1]
	switch op {
	case "=", "!=", "<", ">":
	case "==":
		op = "="
	default:
		return bad("unknown operator " + op)
	}
	target = strings.ToLower(strings.TrimSpace(target))
	if target == "value" || target == "val" {
		return clientv3.Compare(clientv3.Value(key), op, val), nil
	}
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		return bad(target + " compares with an integer")
	}
	switch target {
	case "version", "ver":
		return clientv3.Compare(clientv3.Version(key), op, n), nil
	case "create", "c":
		return clientv3.Compare(clientv3.CreateRevision(key), op, n), nil
	case "mod", "m":
		return clientv3.Compare(clientv3.ModRevision(key), op, n), nil
	}
	return bad("unknown target " + target)
}

// parseOps parses --then or --else operations.
func parseOps(flag string, ss []string) ([]clientv3.Op, error) {
	var ops []clientv3.Op
	for _, s := range ss {
		args, err := splitArgs(s)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: %w", flag, s, err)
		}
		switch {
		case len(args) == 3 && args[0] == "put":
			ops = append(ops, clientv3.OpPut(args[1], args[2]))
		case len(args) == 2 && args[0] == "get":
			ops = append(ops, clientv3.OpGet(args[1]))
		case len(args) == 2 && (args[0] == "del" || args[0] == "delete"):
			ops = append(ops, clientv3.OpDelete(args[1]))
		default:
			return nil, fmt.Errorf("--%s %q: want 'put KEY VALUE', 'get KEY' or 'del KEY'", flag, s)
		}
	}
	return ops, nil
}

// splitArgs splits s at spaces; an argument in double quotes is a Go
// string literal.
func splitArgs(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad quoted string at %s", s)
			}
			v, _ := strconv.Unquote(q)
			out = append(out, v)
			s = s[len(q):]
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
}
