package proxy

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/proxy/command"
)

var update = flag.Bool("update", false, "rewrite docs/commands.md from the proxy's tables")

const commandsDoc = "../docs/commands.md"

// TestCommandsDoc: docs/commands.md says, for every command of the table, what the proxy does with it, and
// is derived from the tables dispatch uses (handlers, notYet, the blocking and admin rules), so it cannot
// drift: a change of behaviour fails this test until `go test ./proxy -run TestCommandsDoc -update` rewrites it.
func TestCommandsDoc(t *testing.T) {
	for name := range handlerNames {
		if handlerDocs[name] == "" {
			t.Errorf("handlerNames has %q, handlerDocs does not say what it does", name)
		}
	}
	for name := range handlerDocs {
		if handlerNames[name] == nil {
			t.Errorf("handlerDocs has %q, which handlerNames does not", name)
		}
	}
	got := commandsTable()
	if *update {
		if err := os.WriteFile(commandsDoc, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(commandsDoc)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s is not what the proxy does; rewrite it with go test ./proxy -run TestCommandsDoc -update",
			commandsDoc)
	}
}

const facadeDoc = "with `peers.cluster_facade`: the fleet of proxies as one Redis Cluster (README, \"Running several proxies\"); refused without"

const pubsubDoc = "sent to every node, replicas too (each counts only its own subscribers), merged as one Redis: channels once, counts summed"

// handlerDocs says what each entry of handlerNames does; TestCommandsDoc fails if the two name different
// commands.
var handlerDocs = map[string]string{
	"multi":   "starts a transaction, queued in the proxy and checked as Redis does",
	"exec":    "runs the transaction on a connection leased from the slot's master",
	"discard": "drops the queued transaction and any `WATCH`",
	"watch":   "sent on a connection leased from the keys' master, kept until `EXEC`",
	"unwatch": "gives the `WATCH` connection up",

	"subscribe":       "kept by the proxy; carried by a connection leased from one master (every node gets every message); the frame once the node confirmed",
	"psubscribe":      "as `SUBSCRIBE`",
	"ssubscribe":      "kept by the proxy; carried by a connection leased from a replica of the channel's shard (the master if none); channels of one slot, else `CROSSSLOT`",
	"unsubscribe":     "answered by the proxy at once; the node's late messages dropped",
	"punsubscribe":    "as `UNSUBSCRIBE`",
	"sunsubscribe":    "as `UNSUBSCRIBE`",
	"wait":            "every master's replication offset read, then its replicas' acknowledgements until numreplicas or the timeout; the smallest count over the masters (proxy/wait.go)",
	"publish":         "sent to one node per channel (a rendezvous hash over all the nodes; a failover does not move it), so that a publisher's messages stay in order",
	"pubsub|channels": pubsubDoc, "pubsub|numsub": pubsubDoc, "pubsub|numpat": pubsubDoc,
	"pubsub|shardchannels": pubsubDoc, "pubsub|shardnumsub": pubsubDoc,
	"spublish": "sent to the shard node its subscribers use (a replica, else the master), then to that node while it stays in the shard, so that messages stay in order through a failover",

	"ping": local, "echo": local, "quit": local, "select": "answered by the proxy: 0 only, as a cluster",
	"hello": "answered by the proxy with its own values; `2` and `3` switch the connection's protocol, `3` to RESP3 served over connections that said `HELLO 3` to the nodes; `AUTH` as `AUTH`",
	"auth":  "answered by the proxy: the proxy's own users (`requirepass`, `users`, `aclfile`), not the cluster's", "reset": local,
	"acl|whoami": aclView, "acl|users": aclView, "acl|list": aclView, "acl|getuser": aclView, "acl|cat": aclView,
	"acl|genpass": local, "acl|dryrun": aclView, "acl|log": "answered by the proxy: its own denials and failed authentications",
	"acl|setuser": aclRefused, "acl|deluser": aclRefused, "acl|load": aclRefused, "acl|save": aclRefused,
	"client|setname": local, "client|getname": local, "client|id": local, "client|info": local,
	"client|list":     "answered by the proxy: every client of the proxy (all event loops), in Redis's format",
	"client|kill":     "answered by the proxy: closes the proxy's clients that match (`ID`, `ADDR`, `LADDR`, `TYPE`, `USER`, `SKIPME`); the nodes' clients are the proxy's connections",
	"client|no-evict": local,
	"client|reply":    "answered by the proxy: `OFF` and `SKIP` drop the replies Redis drops",
	"client|tracking": refused, "client|caching": refused,
	"client|getredir": "answered by the proxy: -1, no client is in tracking mode", "client|trackinginfo": local,
	"readonly": local, "readwrite": local,

	"info":         "a master's `INFO`, with `redis_mode:standalone`, `cluster_enabled:0` and a `# Proxy` section",
	"dbsize":       toMasters + ", counts summed",
	"flushall":     toMasters,
	"flushdb":      toMasters,
	"keys":         toMasters + ", keys concatenated",
	"script|load":  toMasters,
	"script|flush": toMasters,
	"scan":         "walks the masters one after the other; the cursor carries the master",

	"config|get": toMasters + ": each parameter once; the proxy's own (`timeout`, `maxclients`, `tcp-keepalive`, " +
		"`client-query-buffer-limit`, `port`, `bind`, `databases`, `cluster-enabled`, the normal class of " +
		"`client-output-buffer-limit`) with the proxy's values",
	"config|set": "`timeout`, `maxclients`, `tcp-keepalive` change the proxy; other parameters are sent to every " +
		"node (masters and replicas) with `config_set_broadcast: true`, else refused; all or nothing",
	"config|resetstat": "sent to every node with `config_set_broadcast: true`, else refused",
	"config|rewrite":   refused,

	"function|load": toMasters, "function|delete": toMasters, "function|flush": toMasters,
	"function|restore": toMasters,

	"mget": bySlot + ", values in key order", "mset": bySlot, "del": bySlot + ", counts summed",
	"unlink": bySlot + ", counts summed", "exists": bySlot + ", counts summed", "touch": bySlot + ", counts summed",

	"move": refused, "swapdb": refused,

	"slowlog|get":   "the proxy's own: commands whose client-seen latency reached `slowlog-log-slower-than`, in Redis's entry format",
	"slowlog|len":   "the proxy's own slowlog's length",
	"slowlog|reset": "empties the proxy's own slowlog",

	"cluster|slots":           facadeDoc,
	"cluster|shards":          facadeDoc,
	"cluster|nodes":           facadeDoc,
	"cluster|info":            facadeDoc,
	"cluster|myid":            facadeDoc,
	"cluster|keyslot":         facadeDoc,
	"cluster|countkeysinslot": "with `peers.cluster_facade`: sent to the node of the slot; refused without",
	"cluster|getkeysinslot":   "with `peers.cluster_facade`: sent to the node of the slot; refused without",
}

const (
	local      = "answered by the proxy, for the client's own connection"
	aclView    = "answered by the proxy from its users (proxy.yaml)"
	aclRefused = "refused: the proxy's users are changed in proxy.yaml and reloaded on SIGHUP"
	toMasters  = "sent to every master, merged"
	bySlot     = "split into one request per slot, merged as a single Redis answers"
	refused    = "refused"
)

// commandsTable renders docs/commands.md.
func commandsTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Every command through the proxy\n\n"+
		"Generated from the proxy's dispatch tables and the command table of Redis %s by\n"+
		"`go test ./proxy -run TestCommandsDoc -update`; the test fails when this file and the code disagree.\n"+
		"\"Forwarded\" commands go to the master of their keys' slot (all keys in one slot, else `CROSSSLOT`),\n"+
		"read-only ones to a replica under `read_from`; MOVED, ASK, TRYAGAIN and failovers are absorbed.\n\n"+
		"| command | through the proxy |\n|---|---|\n", command.RedisVersion)
	var cmds []*command.Command
	for _, c := range command.All() {
		if c.Subcommands == nil {
			cmds = append(cmds, c)
		}
	}
	slices.SortFunc(cmds, func(a, b *command.Command) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range cmds {
		fmt.Fprintf(&b, "| `%s` | %s |\n", strings.ToUpper(strings.ReplaceAll(c.Name, "|", " ")), describe(c))
	}
	return b.String()
}

func describe(c *command.Command) string {
	if h := handlers[c.Index]; h != nil {
		if d, ok := handlerDocs[c.Name]; ok && d != refused {
			return d
		}
		// notYet, the cluster's own commands, MOVE, SWAPDB: the refusal says it all.
		return "refused: `-" + refusal(h, c) + "`"
	}
	keyless := c.FirstKey == 0 && len(c.KeySpecs) == 0 && !c.Has(command.MovableKeys)
	switch {
	case c.Has(command.Blocking) && (c.Name == "xread" || c.Name == "xreadgroup"):
		return "forwarded; with `BLOCK` on a leased connection of the slot's master (proxy/blocking.go)"
	case c.Has(command.Blocking):
		return "leased connection of the slot's master, for the wait (proxy/blocking.go)"
	case keyless && c.Has(command.Admin):
		return "refused: an admin command would act on one node of many"
	case keyless:
		return "a random master's answer"
	case c.Has(command.ReadOnly):
		return "forwarded (a replica under `read_from`)"
	}
	return "forwarded"
}

// refusal is the error text a refusing handler answers.
func refusal(h handler, c *command.Command) string {
	s := &session{l: &loop{srv: &Server{}, cmdStats: make([]cmdStat, command.Count())}}
	h(s, c, nil, nil, 0)
	return strings.TrimSuffix(strings.TrimPrefix(string(s.work().out), "-"), "\r\n")
}
