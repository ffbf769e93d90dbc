package ring

import "testing"

func TestRing(t *testing.T) {
	var q Ring[int]
	next := 0
	for round := 0; round < 5; round++ {
		for i := 0; i < 40; i++ {
			q.Push(round*1000 + i)
		}
		for i := 0; i < 30; i++ {
			want := next
			if got := q.Pop(); got != want {
				t.Fatalf("Pop = %d, want %d", got, want)
			}
			next++
			if next%1000 == 40 {
				next += 960
			}
		}
	}
	if q.Len() != 50 {
		t.Fatalf("Len = %d, want 50", q.Len())
	}
	q.Set(1, -1)
	if q.At(1) != -1 || q.At(0) != next {
		t.Errorf("At after Set: %d %d", q.At(0), q.At(1))
	}
}
