package liveredis

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the server if this process dies before Stop (a test binary that
// panics or times out leaves no server behind).
func dieWithParent(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
