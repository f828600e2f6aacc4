package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
)

// appliedVersions returns the versions schema_migrations lists, in order.
func appliedVersions(t *testing.T, dsn string) []int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

// wantAllVersions fails t unless schema_migrations lists each version once.
func wantAllVersions(t *testing.T, dsn string) {
	t.Helper()
	got := appliedVersions(t, dsn)
	if len(got) != len(migrations) {
		t.Fatalf("schema_migrations lists versions %v, want 1 to %d once each", got, len(migrations))
	}
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("schema_migrations lists versions %v, want 1 to %d once each", got, len(migrations))
		}
	}
}

func TestConcurrentOpensMigrateOnce(t *testing.T) {
	dsn := testserver.Postgres(t)
	const opens = 8
	stores := make([]*Store, opens)
	errs := make([]error, opens)
	var wg sync.WaitGroup
	for i := range opens {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	wantAllVersions(t, dsn)
	// Each store sees what another writes.
	c := createCache(t, stores[0], "main")
	got, err := stores[opens-1].GetCache(t.Context(), "main")
	if err != nil || got.ID != c.ID {
		t.Fatalf("cache through another store: %+v, %v", got, err)
	}
}

func TestMigrate(t *testing.T) {
	dsn := testserver.Postgres(t)
	for range 2 {
		migrateDB(t, dsn)
	}
	wantAllVersions(t, dsn)
	s := openStore(t, dsn)
	createCache(t, s, "main")
	wantAllVersions(t, dsn)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := testserver.Postgres(t)
	migrateDB(t, dsn)
	admin(t, dsn, fmt.Sprintf(`INSERT INTO schema_migrations (version) VALUES (%d)`, len(migrations)+1))
	_, err := Open(t.Context(), dsn)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open a schema newer than the program: %v, want an error saying so", err)
	}
}

// TestOpenWithoutCreateRight checks that a role that may use the tables but
// not create any opens a database migrated by another.
func TestOpenWithoutCreateRight(t *testing.T) {
	dsn := testserver.Postgres(t)
	migrateDB(t, dsn)
	role := fmt.Sprintf("larder_user_%d", schemas.Add(1))
	admin(t, dsn, `CREATE ROLE `+role+` LOGIN;
		REVOKE CREATE ON SCHEMA public FROM PUBLIC;
		GRANT USAGE ON SCHEMA public TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+role)
	t.Cleanup(func() { admin(t, dsn, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	s := openStore(t, u.String())
	createCache(t, s, "main")
	if _, err := s.CreateCache(t.Context(), store.Cache{Name: "main"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create a taken cache as %s: %v, want store.ErrExists", role, err)
	}
}

func TestOpenBadDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://127.0.0.1:1/x?pool_max_conns=0",
		"postgres://127.0.0.1:1/x?pool_max_conns=many",
		"postgres://%zz",
	} {
		if s, err := Open(t.Context(), dsn); err == nil {
			s.Close()
			t.Errorf("open %s: no error", dsn)
		}
	}
}

func TestParseDSN(t *testing.T) {
	cfg, err := parseDSN("postgres://u@h:5433/db?pool_max_conns=7&application_name=mine")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != 7 {
		t.Errorf("pool size %d, want 7", cfg.MaxConns)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams[poolSizeParam]; ok {
		t.Errorf("%s passed on to the server", poolSizeParam)
	}
	if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != "mine" {
		t.Errorf("application_name %q, want the DSN's", got)
	}
	if cfg.ConnConfig.ConnectTimeout != defaultConnectTimeout {
		t.Errorf("connect timeout %v, want %v", cfg.ConnConfig.ConnectTimeout, defaultConnectTimeout)
	}
	cfg, err = parseDSN("postgres://u@h/db?connect_timeout=3")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns < 4 || cfg.ConnConfig.RuntimeParams["application_name"] != applicationName || cfg.ConnConfig.ConnectTimeout.Seconds() != 3 {
		t.Errorf("defaults: size %d, params %v, timeout %v", cfg.MaxConns, cfg.ConnConfig.RuntimeParams, cfg.ConnConfig.ConnectTimeout)
	}
}

// migrateDB brings the schema of the database up to date as larder
// migrate does: by opening a store on it.
func migrateDB(t *testing.T, dsn string) {
	t.Helper()
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
