package e2e

import "syscall"

// childAttr makes a child process die with the test binary, so that a test
// that panics or times out leaves no member running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
