package topology

import (
	"fmt"
	"slices"
	"testing"
)

// TestLayoutFacade: the shares cover every slot once, in the members' name order, differ by at most one
// slot, and come out the same whatever order the members are listed in.
func TestLayoutFacade(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 10, 100, 16383, 16384} {
		var ms []FacadeMember
		for i := range n {
			ms = append(ms, FacadeMember{Name: fmt.Sprintf("p%05d", (i*7919)%n)})
		}
		f := LayoutFacade(ms)
		slices.Reverse(ms)
		if g := LayoutFacade(ms); !slices.Equal(f, g) {
			t.Fatalf("%d members: the layout depends on the order they are listed in", n)
		}
		next, least, most := 0, NumSlots, 0
		for i, m := range f {
			if i > 0 && f[i-1].Name >= m.Name {
				t.Fatalf("%d members: not in name order at %d", n, i)
			}
			if m.First != next || m.Last < m.First {
				t.Fatalf("%d members: member %d owns %d-%d after %d", n, i, m.First, m.Last, next-1)
			}
			if len(m.ID) != 40 || m.Epoch != i+1 {
				t.Fatalf("%d members: member %d has id %q, epoch %d", n, i, m.ID, m.Epoch)
			}
			size := m.Last - m.First + 1
			least, most = min(least, size), max(most, size)
			next = m.Last + 1
		}
		if next != NumSlots || most-least > 1 {
			t.Errorf("%d members: slots to %d, shares %d to %d", n, next-1, least, most)
		}
	}
	if LayoutFacade(nil) != nil {
		t.Error("no members, yet a layout")
	}
	a := LayoutFacade([]FacadeMember{{Name: "x"}})[0].ID
	if b := LayoutFacade([]FacadeMember{{Name: "x"}, {Name: "y"}})[0].ID; a != b {
		t.Error("a member's id changed with the membership")
	}
}
