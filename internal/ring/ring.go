// Package ring is a growable FIFO ring, used for the requests in flight on a client session and on a backend
// connection. It is owned by one goroutine; nothing is synchronised.
package ring

// Ring is a FIFO of T that grows by doubling. The zero value is empty and ready.
type Ring[T any] struct {
	buf  []T
	head int
	n    int
}

// Len is the number of elements.
func (q *Ring[T]) Len() int { return q.n }

// Push appends v at the back.
func (q *Ring[T]) Push(v T) {
	if q.n == len(q.buf) {
		nb := make([]T, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

// Pop removes and returns the front element. The ring must not be empty.
func (q *Ring[T]) Pop() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return v
}

// At is the i-th element from the front.
func (q *Ring[T]) At(i int) T { return q.buf[(q.head+i)%len(q.buf)] }

// Set replaces the i-th element from the front.
func (q *Ring[T]) Set(i int, v T) { q.buf[(q.head+i)%len(q.buf)] = v }

// Shrink lets an empty ring that grew past max elements drop its buffer.
func (q *Ring[T]) Shrink(max int) {
	if q.n == 0 && len(q.buf) > max {
		q.buf, q.head = nil, 0
	}
}

// Cap is the number of elements the ring holds before it grows.
func (q *Ring[T]) Cap() int { return len(q.buf) }
