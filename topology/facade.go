package topology

import (
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strings"
)

// FacadeMember is a proxy as the cluster facade shows it to cluster-aware clients: a master node that
// owns one contiguous share of the slots.
type FacadeMember struct {
	Name    string
	Host    string
	Port    int // where clients reach it
	BusPort int // where it gossips: the facade's cluster bus
	Self    bool

	ID          string // 40 hex digits derived from Name, so every proxy shows the same
	First, Last int    // its slots
	Epoch       int    // its config epoch: its place in the order, from 1
}

// LayoutFacade sorts the members by name and gives each an equal contiguous share of the 16384 slots, the
// first ones one more when they do not divide evenly: every proxy computes the same layout from the same
// membership.
func LayoutFacade(members []FacadeMember) []FacadeMember {
	out := slices.Clone(members)
	slices.SortFunc(out, func(a, b FacadeMember) int { return strings.Compare(a.Name, b.Name) })
	n := len(out)
	for i := range out {
		id := sha1.Sum([]byte(out[i].Name))
		out[i].ID = hex.EncodeToString(id[:])
		out[i].First = i * NumSlots / n
		out[i].Last = (i+1)*NumSlots/n - 1
		out[i].Epoch = i + 1
	}
	return out
}
