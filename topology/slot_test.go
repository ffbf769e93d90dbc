package topology

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/internal/redistest"
)

// slotVectors were obtained with CLUSTER KEYSLOT from redis-server 7.0.15; TestSlotMatchesServer checks
// them again against the installed server.
var slotVectors = []struct {
	key  string
	slot uint16
}{
	{"", 0}, // Redis hashes the empty key to 0 (go-redis picks a random slot)
	{"123456789", 12739},
	{"{}foo", 9500},         // empty tag: the whole key
	{"foo{}", 5542},         // empty tag: the whole key
	{"foo{}{bar}", 8363},    // only the first '{' counts, and its tag is empty
	{"foo{{bar}}zap", 4015}, // tag "{bar"
	{"foo{bar}", 5061},
	{"{user1000}.following", 3443},
	{"{user1000}.followers", 3443},
	{"{", 4092},
	{"}", 12090},
	{"{a", 10276},
	{"a}", 5921},
	{"}{a}", 15495}, // a '}' before the first '{' does not matter
	{"a{b}c{d}", 3300},
	{"{}{x}", 3257},
	{"{{}}", 4092}, // tag "{"
	{"\x00", 0},
	{"\xff", 7920},
	{"\x00{\xff}\x00", 7920},
	{"a\x00{}b", 10645},
	{"key:000000012345", 12533},
	{"{a}", 15495},
	{"a", 15495},
}

func TestSlotVectors(t *testing.T) {
	for _, v := range slotVectors {
		if got := Slot([]byte(v.key)); got != v.slot {
			t.Errorf("Slot(%q) = %d, want %d", v.key, got, v.slot)
		}
	}
	if got := Slot(nil); got != 0 {
		t.Errorf("Slot(nil) = %d, want 0", got)
	}
}

func TestSlotAllocs(t *testing.T) {
	keys := [][]byte{[]byte("{user1000}.following"), []byte("key:000000012345"), nil}
	for _, k := range keys {
		if n := testing.AllocsPerRun(1000, func() { Slot(k) }); n != 0 {
			t.Errorf("Slot(%q) allocates %v times per run", k, n)
		}
	}
}

// TestSlotMatchesServer compares Slot with CLUSTER KEYSLOT of a real server for the vectors, edge cases,
// long and binary keys and random keys built from the characters that matter.
func TestSlotMatchesServer(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	keys := []string{
		"", "123456789", "{}foo", "foo{}", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}", "{user1000}.following",
		"{", "}", "{a", "a{b}c{d}", "{}{x}", "{{}}", "{a}{b}", "}{", "}{}", "\x00", "\xff", "\xff{\x00}",
		"a\x00{b\xff}c", "{\x00}", "{\xff\xff}\xff",
		strings.Repeat("k", 10000), strings.Repeat("{", 5000) + "}", "{" + strings.Repeat("t", 100000) + "}x",
		strings.Repeat("\xff\x00", 3000),
	}
	for _, v := range slotVectors {
		keys = append(keys, v.key)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, r.IntN(24))
		for j := range b {
			if r.IntN(2) == 0 {
				b[j] = "ab{}\x00\xff"[r.IntN(6)]
			} else {
				b[j] = byte(r.UintN(256))
			}
		}
		keys = append(keys, string(b))
	}

	c := srv.Client(t)
	ctx := context.Background()
	pipe := c.Pipeline()
	for _, k := range keys {
		pipe.ClusterKeySlot(ctx, k)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		want, err := cmds[i].(interface{ Result() (int64, error) }).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot([]byte(k)); int64(got) != want {
			t.Errorf("Slot(%.40q) = %d, CLUSTER KEYSLOT = %d", k, got, want)
		}
	}
}

func BenchmarkSlot(b *testing.B) {
	for _, k := range []string{"key:000000012345", "{user1000}.following", strings.Repeat("k", 1024)} {
		key := []byte(k)
		b.Run(strconv.Itoa(len(key))+"B", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(key)))
			for b.Loop() {
				Slot(key)
			}
		})
	}
}

// TestCRC16Slicing checks the 4-byte step against the byte-at-a-time definition for every length up to 64
// and random contents.
func TestCRC16Slicing(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 65 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		var want uint16
		for _, c := range b {
			want ^= uint16(c) << 8
			for range 8 {
				if want&0x8000 != 0 {
					want = want<<1 ^ 0x1021
				} else {
					want <<= 1
				}
			}
		}
		if got := crc16(b); got != want {
			t.Fatalf("crc16(%x) = %#04x, want %#04x", b, got, want)
		}
	}
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#04x, want 0x31C3", got)
	}
}
