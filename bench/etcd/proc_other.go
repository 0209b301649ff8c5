//go:build !linux

package etcd

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
