package nixhttp_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

type configT = config.Config

func serviceSpec(name string) service.CacheSpec { return service.CacheSpec{Name: name} }

func (e *env) token(cache string, perm store.Perm, expires time.Duration) string {
	e.t.Helper()
	tok, _, err := e.app.Service.CreateToken(e.t.Context(), service.TokenSpec{Cache: cache, Perm: perm, ExpiresIn: expires})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func TestWriteAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.app.Service.CreateCache(t.Context(), serviceSpec("other")); err != nil {
		t.Fatal(err)
	}
	p := newPath(t, "auth", []byte("auth"), "zstd")
	read := e.token("main", store.PermRead, 0)
	otherWrite := e.token("other", store.PermWrite, 0)
	write := e.token("main", store.PermWrite, 0)
	expired := e.token("main", store.PermWrite, time.Second)
	before := e.snapshot()
	cases := []struct {
		name, token string
		status      int
		msg         string
	}{
		{"no token", "", 401, "a token is needed"},
		{"unknown token", "lrd_notatoken", 401, "not valid"},
		{"read token", read, 403, "allows read"},
		{"other cache's token", otherWrite, 403, "for cache other"},
	}
	for _, c := range cases {
		for _, key := range []string{p.URL(), p.Hash + ".narinfo", "log/" + strings.Repeat("a", 32) + "-x.drv"} {
			resp, msg := e.do("PUT", "/main/"+key, c.token, p.File)
			if resp.StatusCode != c.status || !strings.Contains(msg, c.msg) {
				t.Errorf("%s, PUT %s: %d %q, want %d %q", c.name, key, resp.StatusCode, msg, c.status, c.msg)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", c.name)
			}
		}
	}
	e.mustUnchanged(before)

	// HTTP Basic, as Nix sends from a netrc file: the user name is ignored.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+write))
	e.expect(201, "PUT", "/main/"+p.URL(), "", p.File, "Authorization", basic)

	time.Sleep(1100 * time.Millisecond) // let the one-second token expire
	_, msg := e.expect(401, "PUT", "/main/"+p.Hash+".narinfo", expired, []byte(p.NarInfo()))
	if !strings.Contains(msg, "expired") {
		t.Errorf("expired token: %q", msg)
	}
}

func TestPrivateCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.app.Service.CreateCache(t.Context(), service.CacheSpec{Name: "secret", Private: true}); err != nil {
		t.Fatal(err)
	}
	p := newPath(t, "private", []byte("private"), "zstd")
	e.push("secret", p)
	read := e.token("secret", store.PermRead, 0)
	mainRead := e.token("main", store.PermRead, 0)
	for _, key := range []string{"nix-cache-info", p.Hash + ".narinfo", p.URL(), strings.Repeat("0", 32) + ".narinfo"} {
		e.expect(401, "GET", "/secret/"+key, "", nil)
		e.expect(403, "GET", "/secret/"+key, mainRead, nil)
	}
	e.expect(200, "GET", "/secret/nix-cache-info", read, nil)
	resp, _ := e.expect(200, "GET", "/secret/"+p.Hash+".narinfo", read, nil)
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private") {
		t.Errorf("private narinfo Cache-Control %q", cc)
	}
	e.expect(200, "GET", "/secret/"+p.URL(), read, nil)
	if !strings.Contains(e.logs.String(), "read denied") {
		t.Error("denied reads are not logged")
	}

	// Revocation takes effect at once.
	list, err := e.app.Service.ListTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	for _, tk := range list {
		if tk.Scope == "secret" && tk.Perm == store.PermRead {
			id = tk.ID
		}
	}
	if err := e.app.Service.RevokeToken(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	e.expect(401, "GET", "/secret/"+p.Hash+".narinfo", read, nil)
}

func TestPublicReadIgnoresCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Nix sends netrc credentials with every request; a public cache
	// serves reads whatever they are.
	e.expect(200, "GET", "/main/nix-cache-info", "lrd_garbage", nil)
}
