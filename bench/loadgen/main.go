// Command loadgen runs the failover tests' load against any address and prints what it saw:
//
//	go run ./bench/loadgen -addr 127.0.0.1:7777 -clients 50 -duration 30s
//	go run ./bench/loadgen -cluster -addr 127.0.0.1:7000 ...   (go-redis ClusterClient, for comparison)
//
// Meanwhile, fail over, reshard or add nodes; the summary counts errors, lost writes and latency.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/loadgen"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7777", "address (with -cluster: comma-separated cluster nodes)")
	cluster := flag.Bool("cluster", false, "use go-redis ClusterClient instead of plain clients")
	clients := flag.Int("clients", 50, "concurrent clients")
	keys := flag.Int("keys", 200, "keys per client")
	duration := flag.Duration("duration", 30*time.Second, "how long to run")
	flag.Parse()

	newClient := func() redis.Cmdable {
		return redis.NewClient(&redis.Options{Addr: *addr, PoolSize: 1, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, MaxRetries: -1})
	}
	if *cluster {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(*addr, ","),
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
		newClient = func() redis.Cmdable { return cc }
	}
	stop := loadgen.Run(loadgen.Config{Clients: *clients, KeysPerWorker: *keys,
		Prefix: fmt.Sprintf("lg%d", time.Now().Unix()), NewClient: newClient})
	time.Sleep(*duration)
	res := stop()
	fmt.Println(res.Window(time.Time{}, time.Time{}))
	fmt.Printf("lost writes %d, counter mismatches %d, INCRs with unknown outcome %d\n",
		res.LostWrites, res.CounterMismatch, res.UnknownIncrs)
	problems := res.Problems()
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
