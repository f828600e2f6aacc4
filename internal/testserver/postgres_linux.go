package testserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// pgUser is whom a server runs as.
type pgUser = syscall.Credential

// pgCredential returns whom to run the server as: PostgreSQL refuses to
// run as root, so root runs it as the system user postgres.
func pgCredential() (*pgUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root and %v", errPGMissing, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// pgProcAttr runs a PostgreSQL program as cred (nil: this process's user).
func pgProcAttr(cred *pgUser) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}

// pgStopWithParent makes the kernel tell the server to shut down should
// this process die without stopping it.
func pgStopWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
}

// processRuns reports whether a process with ID pid runs.
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
