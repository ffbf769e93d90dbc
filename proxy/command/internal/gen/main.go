// Command gen writes proxy/command/table_gen.go from a redis-server's COMMAND reply: every command and
// subcommand with its arity, flags, legacy key range, ACL categories, tips and key specifications.
//
// Against a server that is already running:
//
//	go run ./proxy/command/internal/gen -addr 127.0.0.1:6379 -o proxy/command/table_gen.go
//
// Or let gen start a throwaway server on a free port and stop it afterwards (what go generate does):
//
//	go run ./proxy/command/internal/gen -start redis-server -o proxy/command/table_gen.go
//
// gen fails on anything in the reply it does not know (a new flag, category or key spec type), so a table
// for a newer Redis starts with updating command.go and this program.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"slices"
	"strings"

	"github.com/slotproxy/slotproxy/proxy/command/internal/liveredis"
)

func main() {
	addr := flag.String("addr", "", "host:port of a running redis-server to read COMMAND from")
	start := flag.String("start", "", "start this redis-server binary on a free port instead of using -addr")
	out := flag.String("o", "table_gen.go", "output file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("gen: ")
	if (*addr == "") == (*start == "") {
		log.Fatal("give exactly one of -addr and -start")
	}
	if err := gen(*addr, *start, *out); err != nil {
		log.Fatal(err)
	}
}

// gen writes the table to out from the server at addr, or from a server it starts from the binary start.
func gen(addr, start, out string) error {
	if start != "" {
		dir, err := liveredis.TempDir()
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		srv, err := liveredis.Start(start, dir)
		if err != nil {
			return err
		}
		defer srv.Stop()
		addr = srv.Addr
	}
	return run(addr, out)
}

func run(addr, out string) error {
	c, err := liveredis.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	version, err := serverVersion(c)
	if err != nil {
		return err
	}
	reply, err := c.Do("COMMAND")
	if err != nil {
		return fmt.Errorf("COMMAND: %w", err)
	}
	count, err := c.Do("COMMAND", "COUNT")
	if err != nil {
		return fmt.Errorf("COMMAND COUNT: %w", err)
	}
	var cmds []*cmd
	for _, v := range list(reply) {
		c, err := parseCommand(v, "")
		if err != nil {
			return err
		}
		cmds = append(cmds, c)
	}
	if n, _ := count.(int64); int(n) != len(cmds) {
		return fmt.Errorf("COMMAND has %d commands, COMMAND COUNT says %v", len(cmds), count)
	}
	src, err := generate(version, cmds)
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

func serverVersion(c *liveredis.Conn) (string, error) {
	v, err := c.Do("INFO", "server")
	if err != nil {
		return "", fmt.Errorf("INFO server: %w", err)
	}
	for line := range strings.SplitSeq(str(v), "\r\n") {
		if s, ok := strings.CutPrefix(line, "redis_version:"); ok {
			return s, nil
		}
	}
	return "", errors.New("INFO server has no redis_version")
}

// cmd is one entry of COMMAND's reply, in Go syntax where that is all it is used for.
type cmd struct {
	name                     string // lower case, "parent|sub" for a subcommand
	arity, first, last, step int64
	flags, categories        string   // Go expressions
	tips                     []string //
	specs                    []string // Go composite literals
	subs                     []*cmd
}

// Wire names to the identifiers of command.go.
var (
	flagIdents = map[string]string{
		"write": "Write", "readonly": "ReadOnly", "denyoom": "DenyOOM", "module": "Module", "admin": "Admin",
		"pubsub": "PubSub", "noscript": "NoScript", "blocking": "Blocking", "loading": "Loading",
		"stale": "Stale", "skip_monitor": "SkipMonitor", "skip_slowlog": "SkipSlowlog", "asking": "Asking",
		"fast": "Fast", "no_auth": "NoAuth", "may_replicate": "MayReplicate", "sentinel": "Sentinel",
		"only_sentinel": "OnlySentinel", "no_mandatory_keys": "NoMandatoryKeys", "protected": "Protected",
		"no_async_loading": "NoAsyncLoading", "no_multi": "NoMulti", "movablekeys": "MovableKeys",
		"allow_busy": "AllowBusy",
	}
	categoryIdents = map[string]string{
		"@keyspace": "CatKeyspace", "@read": "CatRead", "@write": "CatWrite", "@set": "CatSet",
		"@sortedset": "CatSortedSet", "@list": "CatList", "@hash": "CatHash", "@string": "CatString",
		"@bitmap": "CatBitmap", "@hyperloglog": "CatHyperLogLog", "@geo": "CatGeo", "@stream": "CatStream",
		"@pubsub": "CatPubSub", "@admin": "CatAdmin", "@fast": "CatFast", "@slow": "CatSlow",
		"@blocking": "CatBlocking", "@dangerous": "CatDangerous", "@connection": "CatConnection",
		"@transaction": "CatTransaction", "@scripting": "CatScripting",
	}
	keySpecFlagIdents = map[string]string{
		"RO": "KeyRO", "RW": "KeyRW", "OW": "KeyOW", "RM": "KeyRM", "access": "KeyAccess",
		"update": "KeyUpdate", "insert": "KeyInsert", "delete": "KeyDelete", "not_key": "KeyNotKey",
		"incomplete": "KeyIncomplete", "variable_flags": "KeyVariableFlags",
	}
)

// parseCommand reads one entry of the 7.0 form: name, arity, flags, first key, last key, step, ACL
// categories, tips, key specs, subcommands.
func parseCommand(v any, parent string) (*cmd, error) {
	e := list(v)
	if len(e) != 10 {
		return nil, fmt.Errorf("COMMAND entry %v has %d fields, want 10 (the Redis 7 form)", v, len(e))
	}
	c := &cmd{name: strings.ToLower(str(e[0]))}
	if parent != "" && !strings.HasPrefix(c.name, parent+"|") {
		return nil, fmt.Errorf("subcommand %q of %q", c.name, parent)
	}
	if parent == "" && strings.Contains(c.name, "|") {
		return nil, fmt.Errorf("command name %q", c.name)
	}
	var ok [4]bool
	c.arity, ok[0] = e[1].(int64)
	c.first, ok[1] = e[3].(int64)
	c.last, ok[2] = e[4].(int64)
	c.step, ok[3] = e[5].(int64)
	if slices.Contains(ok[:], false) {
		return nil, fmt.Errorf("%s: arity or key range is not an integer: %v", c.name, e[1:6])
	}
	var err error
	if c.flags, err = idents(c.name, "flag", list(e[2]), flagIdents); err != nil {
		return nil, err
	}
	if c.categories, err = idents(c.name, "ACL category", list(e[6]), categoryIdents); err != nil {
		return nil, err
	}
	for _, t := range list(e[7]) {
		c.tips = append(c.tips, str(t))
	}
	for _, s := range list(e[8]) {
		spec, err := parseKeySpec(c.name, pairs(s))
		if err != nil {
			return nil, err
		}
		c.specs = append(c.specs, spec)
	}
	for _, s := range list(e[9]) {
		if parent != "" {
			return nil, fmt.Errorf("%s: subcommands of a subcommand", c.name)
		}
		sub, err := parseCommand(s, c.name)
		if err != nil {
			return nil, err
		}
		c.subs = append(c.subs, sub)
	}
	slices.SortFunc(c.subs, func(a, b *cmd) int { return strings.Compare(a.name, b.name) })
	return c, nil
}

func idents(cmdName, what string, names []any, known map[string]string) (string, error) {
	var out []string
	for _, n := range names {
		id, ok := known[str(n)]
		if !ok {
			return "", fmt.Errorf("%s: unknown %s %q: add it to command.go and gen", cmdName, what, str(n))
		}
		out = append(out, id)
	}
	if len(out) == 0 {
		return "0", nil
	}
	return strings.Join(out, " | "), nil
}

func parseKeySpec(name string, spec map[string]any) (string, error) {
	flags, err := idents(name, "key spec flag", list(spec["flags"]), keySpecFlagIdents)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{Flags: %s, ", flags)

	bs := pairs(spec["begin_search"])
	bsSpec := pairs(bs["spec"])
	switch t := str(bs["type"]); t {
	case "index":
		idx, err := ints(name, bsSpec, "index")
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "BeginSearch: BeginIndex, Index: %d, ", idx[0])
	case "keyword":
		kw, ok := bsSpec["keyword"].(string)
		from, err := ints(name, bsSpec, "startfrom")
		if err != nil || !ok {
			return "", fmt.Errorf("%s: keyword begin_search %v", name, bsSpec)
		}
		fmt.Fprintf(&b, "BeginSearch: BeginKeyword, Keyword: %q, StartFrom: %d, ", kw, from[0])
	case "unknown":
		b.WriteString("BeginSearch: BeginUnknown, ")
	default:
		return "", fmt.Errorf("%s: begin_search type %q", name, t)
	}

	fk := pairs(spec["find_keys"])
	fkSpec := pairs(fk["spec"])
	switch t := str(fk["type"]); t {
	case "range":
		v, err := ints(name, fkSpec, "lastkey", "keystep", "limit")
		if err != nil {
			return "", err
		}
		if v[1] < 1 {
			return "", fmt.Errorf("%s: keystep %d", name, v[1])
		}
		fmt.Fprintf(&b, "FindKeys: FindRange, LastKey: %d, KeyStep: %d, Limit: %d}", v[0], v[1], v[2])
	case "keynum":
		v, err := ints(name, fkSpec, "keynumidx", "firstkey", "keystep")
		if err != nil {
			return "", err
		}
		if v[2] < 1 {
			return "", fmt.Errorf("%s: keystep %d", name, v[2])
		}
		fmt.Fprintf(&b, "FindKeys: FindKeynum, KeyNumIdx: %d, FirstKey: %d, KeyStep: %d}", v[0], v[1], v[2])
	case "unknown":
		b.WriteString("FindKeys: FindUnknown}")
	default:
		return "", fmt.Errorf("%s: find_keys type %q", name, t)
	}
	return b.String(), nil
}

func ints(name string, m map[string]any, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	for i, k := range keys {
		v, ok := m[k].(int64)
		if !ok {
			return nil, fmt.Errorf("%s: key spec field %q is %v, want an integer", name, k, m[k])
		}
		out[i] = v
	}
	return out, nil
}

func generate(version string, cmds []*cmd) ([]byte, error) {
	slices.SortFunc(cmds, func(a, b *cmd) int { return strings.Compare(a.name, b.name) })
	maxName := 0
	for _, c := range cmds {
		maxName = max(maxName, len(c.name))
		for _, s := range c.subs {
			_, sub, _ := strings.Cut(s.name, "|")
			maxName = max(maxName, len(sub))
		}
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by proxy/command/internal/gen from the COMMAND reply of redis-server %s. DO NOT EDIT.\n\n", version)
	b.WriteString("package command\n\n")
	b.WriteString("// RedisVersion is the version of the redis-server the table was generated from.\n")
	fmt.Fprintf(&b, "const RedisVersion = %q\n\n", version)
	b.WriteString("// maxNameLen is the length of the longest command name and of the longest subcommand name.\n")
	fmt.Fprintf(&b, "const maxNameLen = %d\n\n", maxName)
	b.WriteString("// commands holds every command, sorted by name, each container followed by its subcommands.\n")
	b.WriteString("var commands = [...]Command{\n")
	index := 0
	for _, c := range cmds {
		writeCommand(&b, c, &index)
		for _, s := range c.subs {
			writeCommand(&b, s, &index)
		}
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting the generated code: %w", err)
	}
	return src, nil
}

func writeCommand(b *bytes.Buffer, c *cmd, index *int) {
	fmt.Fprintf(b, "{Index: %d, Name: %q, Arity: %d, Flags: %s, FirstKey: %d, LastKey: %d, Step: %d, Categories: %s",
		*index, c.name, c.arity, c.flags, c.first, c.last, c.step, c.categories)
	*index++
	if len(c.tips) == 0 && len(c.specs) == 0 {
		b.WriteString("},\n")
		return
	}
	b.WriteString(",\n")
	if len(c.tips) > 0 {
		fmt.Fprintf(b, "Tips: %#v,\n", c.tips)
	}
	if len(c.specs) > 0 {
		b.WriteString("KeySpecs: []KeySpec{\n")
		for _, s := range c.specs {
			b.WriteString(s + ",\n")
		}
		b.WriteString("},\n")
	}
	b.WriteString("},\n")
}

// list is an array reply, or nil.
func list(v any) []any {
	a, _ := v.([]any)
	return a
}

// pairs is a RESP2 map (a flat array of keys and values).
func pairs(v any) map[string]any {
	a := list(v)
	m := make(map[string]any, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		m[str(a[i])] = a[i+1]
	}
	return m
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}
