// Command etcdserver is etcd's server, built from go.etcd.io/etcd/server/v3
// at the version bench/go.mod pins, so that `make bench-etcd` can run a real
// etcd cluster beside synod's without an etcd installation. It takes etcd's
// flags (etcd --help).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
