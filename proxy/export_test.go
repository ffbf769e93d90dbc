package proxy

// LoopTicks reports, for each event loop that has run, how many requests it holds alive and whether its
// tick is set.
func LoopTicks(s *Server) (live []int, armed []bool) {
	for _, st := range onEachLoop(s, func(l *loop) [2]int {
		a := 0
		if l.tickArmed {
			a = 1
		}
		return [2]int{l.live, a}
	}) {
		live, armed = append(live, st[0]), append(armed, st[1] == 1)
	}
	return live, armed
}
