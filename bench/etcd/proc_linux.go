package etcd

import "syscall"

// childAttr makes a child process die with this process, so that a crash
// or an interrupted run leaves no cluster behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
