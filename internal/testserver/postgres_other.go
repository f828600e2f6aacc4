//go:build !linux

package testserver

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
)

// pgUser is whom a server would run as; no server runs here.
type pgUser struct{ Uid, Gid uint32 }

// pgCredential says that the test servers run on Linux only: they rely on
// its process credentials and parent-death signal. Tests that need one are
// skipped elsewhere.
func pgCredential() (*pgUser, error) {
	return nil, fmt.Errorf("%w: test servers run on Linux, not %s", errPGMissing, runtime.GOOS)
}

func pgProcAttr(*pgUser) *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

func pgStopWithParent(*exec.Cmd) {}

func processRuns(int) bool { return false }
