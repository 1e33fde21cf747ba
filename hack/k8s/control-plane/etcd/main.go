// Command etcd runs the etcd server at the version this module pins; it exists
// because go.etcd.io/etcd/server/v3 cannot be installed directly (its go.mod
// carries replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
