// Package testserver starts the real servers that larder's tests talk to,
// such as PostgreSQL, and hands each test a fresh, empty place on them. A
// server is started on first use and shared by the tests of one test
// binary; tests that stop or restart a server start a private one.
//
// Nothing here is used outside tests.
package testserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgRequireEnv names the environment variable that, set to 1, turns a
// missing PostgreSQL installation from a skipped test into a failed one.
const pgRequireEnv = "LARDER_REQUIRE_POSTGRES"

const (
	// pgReadyTimeout bounds how long a starting server may take to accept
	// connections.
	pgReadyTimeout = time.Minute
	// pgStopTimeout bounds how long a fast shutdown may take before the
	// server is told to quit at once.
	pgStopTimeout = 30 * time.Second
	// pgAdminTimeout bounds creating and dropping a database.
	pgAdminTimeout = 30 * time.Second
	// pgDirPattern names the directories servers keep their files in, in
	// the system's temporary directory.
	pgDirPattern = "larder-pg-*"
)

// errPGMissing says that no PostgreSQL server binaries were found.
var errPGMissing = errors.New("postgresql server binaries not found")

// PGServer is a PostgreSQL server run from a temporary directory, which
// listens on 127.0.0.1 and on a unix socket in that directory and trusts
// every local connection. It runs with fsync, full page writes and
// synchronous commit off: a crash of the machine may lose its data, which
// tests do not keep.
type PGServer struct {
	// DSN is the URL of the server's maintenance database "postgres", for
	// its superuser "postgres".
	DSN string
	// Port is the TCP port the server listens on; restarts keep it.
	Port int

	dir  string       // the data directory "data", the socket and the log
	bin  string       // the directory of initdb and postgres
	cred *pgUser      // whom to run the server as; nil: this process's user
	dbs  atomic.Int64 // databases created, for their names

	mu   sync.Mutex
	done <-chan struct{} // closed when the running server exits; nil when stopped
	proc *os.Process
}

// pgShared is the server PostgresServer shares among the tests of a binary.
var pgShared struct {
	mu  sync.Mutex
	srv *PGServer
	err error // why it could not be started; kept so that it is tried once
}

// Postgres returns the URL of a new, empty database on the shared server,
// which is dropped when t ends. It skips t if PostgreSQL is not installed,
// unless LARDER_REQUIRE_POSTGRES=1 asks to fail it.
func Postgres(t testing.TB) string {
	t.Helper()
	return PostgresServer(t).NewDatabase(t)
}

// PostgresServer returns the server shared by the tests of this binary,
// starting it on first use. A package whose tests use it calls
// StopPostgres from TestMain once they have run; otherwise the server is
// stopped when the test binary exits and its directory removed by the next
// binary that starts one. Tests of the shared server must not stop or
// restart it: other tests may be using it at the same time.
func PostgresServer(t testing.TB) *PGServer {
	t.Helper()
	pgShared.mu.Lock()
	defer pgShared.mu.Unlock()
	if pgShared.srv == nil && pgShared.err == nil {
		pgShared.srv, pgShared.err = startPGServer()
	}
	if pgShared.err != nil {
		pgFailOrSkip(t, pgShared.err)
	}
	return pgShared.srv
}

// StopPostgres stops the shared server, if it was started, and removes its
// files. A later PostgresServer starts a new one.
func StopPostgres() {
	pgShared.mu.Lock()
	defer pgShared.mu.Unlock()
	if pgShared.srv != nil {
		if err := pgShared.srv.shutdown(); err != nil {
			fmt.Fprintf(os.Stderr, "testserver: %v\n", err)
		}
	}
	pgShared.srv, pgShared.err = nil, nil
}

// NewPostgresServer starts a server of t's own, stopped and removed when t
// ends, for tests that stop or restart it.
func NewPostgresServer(t testing.TB) *PGServer {
	t.Helper()
	s, err := startPGServer()
	if err != nil {
		pgFailOrSkip(t, err)
	}
	t.Cleanup(func() {
		if err := s.shutdown(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// pgFailOrSkip ends t because the server could not be started: it skips t
// if PostgreSQL is not installed and LARDER_REQUIRE_POSTGRES is not 1, and
// fails it otherwise.
func pgFailOrSkip(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errPGMissing) && os.Getenv(pgRequireEnv) != "1" {
		t.Skipf("%v (%s=1 makes this a failure)", err, pgRequireEnv)
	}
	t.Fatal(err)
}

// NewDatabase creates a new, empty database and returns its URL. The
// database is dropped when t ends, together with any connection to it.
func (s *PGServer) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	if err := s.admin("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := s.admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return s.url(name)
}

// admin runs the statement sql on the maintenance database.
func (s *PGServer) admin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgAdminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// url returns the URL of the database called name, for the superuser.
func (s *PGServer) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// Stop stops the server with a fast shutdown, which ends every
// connection; its data stays for Start.
func (s *PGServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}

// Start starts the stopped server again, on the same port and data.
func (s *PGServer) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Restart stops the server with a fast shutdown, which ends every
// connection, and starts it again on the same port and data.
func (s *PGServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// startPGServer creates a database cluster in a new temporary directory and
// starts a server on it.
func startPGServer() (*PGServer, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	pgSweep()
	s := &PGServer{bin: bin}
	if s.cred, err = pgCredential(); err != nil {
		return nil, err
	}
	if err := s.setUp(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	if err := s.start(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	return s, nil
}

// setUp makes the server's directory, owned by the user the server runs
// as, chooses its port and runs initdb.
func (s *PGServer) setUp() error {
	dir, err := os.MkdirTemp("", pgDirPattern)
	if err != nil {
		return fmt.Errorf("start postgresql: %w", err)
	}
	s.dir = dir
	// The owner file tells pgSweep whose directory this is.
	owner := filepath.Join(dir, "owner")
	if err := os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("start postgresql: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return fmt.Errorf("start postgresql: %w", err)
		}
	}
	if s.Port, err = pgFreePort(); err != nil {
		return fmt.Errorf("start postgresql: %w", err)
	}
	s.DSN = s.url("postgres")
	return s.initdb()
}

// initdb creates the database cluster. Its default collation is ICU's
// en-US where the server supports it, so that tests see the difference
// between that and the byte order the store asks for; otherwise C.UTF-8.
func (s *PGServer) initdb() error {
	data := filepath.Join(s.dir, "data")
	common := []string{"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"}
	var err error
	for _, locale := range [][]string{
		{"--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US"},
		{"--locale=C.UTF-8"},
		{"--locale=C"},
	} {
		cmd := s.command("initdb", slices.Concat(common, locale)...)
		out, runErr := cmd.CombinedOutput()
		if runErr == nil {
			return nil
		}
		err = fmt.Errorf("initdb %s: %w\n%s", strings.Join(locale, " "), runErr, out)
		os.RemoveAll(data)
	}
	return err
}

// command returns a command running the PostgreSQL program name in the
// server's directory, as the server's user.
func (s *PGServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	cmd.SysProcAttr = pgProcAttr(s.cred)
	return cmd
}

// start starts the server and waits until it accepts connections.
func (s *PGServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("start postgresql: already running")
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start postgresql: %w", err)
	}
	defer log.Close()
	cmd := s.command("postgres", "-D", filepath.Join(s.dir, "data"),
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(s.Port),
		"-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "max_connections=200", "-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = log, log
	pgStopWithParent(cmd)
	done, err := pgSpawn(cmd)
	if err != nil {
		return fmt.Errorf("start postgresql: %w", err)
	}
	s.done, s.proc = done, cmd.Process
	if err := s.waitReady(done); err != nil {
		s.kill()
		return fmt.Errorf("start postgresql: %w\n%s", err, s.logTail())
	}
	return nil
}

// pgSpawn starts cmd from a goroutine locked to its thread until cmd
// exits, and returns a channel closed then. The parent-death signal of a
// child is sent when the thread that started it ends, not the process, so
// the thread must outlive the child.
func pgSpawn(cmd *exec.Cmd) (<-chan struct{}, error) {
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait() // the exit status of a stopped server says nothing
	}()
	if err := <-started; err != nil {
		<-done
		return nil, err
	}
	return done, nil
}

// waitReady waits until the server accepts connections to its maintenance
// database, or exits, or pgReadyTimeout has passed.
func (s *PGServer) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(pgReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.DSN)
		cancel()
		if err == nil {
			return conn.Close(context.Background())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", pgReadyTimeout, err)
		}
		select {
		case <-done:
			return errors.New("server exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop stops the running server with a fast shutdown, and at once if that
// takes longer than pgStopTimeout.
func (s *PGServer) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return errors.New("stop postgresql: not running")
	}
	if err := s.proc.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgresql: %w", err)
	}
	select {
	case <-s.done:
	case <-time.After(pgStopTimeout):
		s.kill()
		return fmt.Errorf("stop postgresql: no fast shutdown in %v\n%s", pgStopTimeout, s.logTail())
	}
	s.done, s.proc = nil, nil
	return nil
}

// kill tells the running server to quit at once and waits for it to exit.
// The caller holds s.mu.
func (s *PGServer) kill() {
	s.proc.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(pgStopTimeout):
		s.proc.Kill()
		<-s.done
	}
	s.done, s.proc = nil, nil
}

// shutdown stops the server if it runs and removes its directory.
func (s *PGServer) shutdown() error {
	s.mu.Lock()
	running := s.done != nil
	s.mu.Unlock()
	var err error
	if running {
		err = s.stop()
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// logTail returns the end of the server's log, to explain a failure.
func (s *PGServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// pgBinDir returns the directory of the newest installed initdb and
// postgres: Debian keeps them in /usr/lib/postgresql/<version>/bin, others
// on PATH.
func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	for _, dir := range dirs {
		if pgHasBinaries(dir) {
			return dir, nil
		}
	}
	if path, err := exec.LookPath("initdb"); err == nil && pgHasBinaries(filepath.Dir(path)) {
		return filepath.Dir(path), nil
	}
	return "", errPGMissing
}

// pgHasBinaries reports whether dir holds initdb and postgres.
func pgHasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// pgFreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func pgFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pgSweep removes the directories of servers whose test binaries exited
// without stopping them, once the servers too are gone.
func pgSweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pgDirPattern))
	for _, dir := range dirs {
		if pgAlive(filepath.Join(dir, "owner")) || pgAlive(filepath.Join(dir, "data", "postmaster.pid")) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "owner")); err == nil {
			os.RemoveAll(dir)
		}
	}
}

// pgAlive reports whether the process whose ID is the first line of the
// file at path runs; a missing or unreadable file names none.
func pgAlive(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	return err == nil && pid > 0 && processRuns(pid)
}
