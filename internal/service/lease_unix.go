//go:build unix

package service

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// deadHere reports whether holder names a process of this host that does
// not run any more.
func deadHere(holder string) bool {
	i := strings.LastIndexByte(holder, ':')
	if i < 0 {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(holder[i+1:])
	if holder[:i] != host || err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
