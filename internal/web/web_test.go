package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/sqlite"
	"github.com/larder-cache/larder/internal/testserver"
	"github.com/larder-cache/larder/internal/web"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// hostile is text a narinfo may carry (System is free text) that would run
// or break a page if it were not escaped.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>'"&`

// env is a service with three caches (main public; secret and beta
// private), tokens for them, and the dashboard over it.
type env struct {
	t         *testing.T
	svc       *service.Service
	srv       *httptest.Server
	log       *testserver.SyncBuffer
	readToken string // read on secret
	admin     string // admin on every cache
	betaAdmin string // admin on beta
	top, lib  string // base names of paths of main; top refers to lib
}

func newEnv(t *testing.T, opts web.Options) *env {
	t.Helper()
	dir := t.TempDir()
	meta, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(t.Context(), service.Options{Meta: meta, Blobs: blobs, HistoryInterval: time.Second,
		Limits: service.Limits{MaxNarInfoSize: 1 << 20, MaxUploadSize: 1 << 30, MaxNarSize: 1 << 30, MaxFileSize: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, svc: svc, log: &testserver.SyncBuffer{}}
	for _, spec := range []service.CacheSpec{{Name: "main"}, {Name: "secret", Private: true}, {Name: "beta", Private: true}} {
		if _, err := svc.CreateCache(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	e.readToken = e.token("secret", store.PermRead)
	e.admin = e.token("*", store.PermAdmin)
	e.betaAdmin = e.token("beta", store.PermAdmin)
	e.lib = e.push("main", "lib-1.0")
	e.top = e.push("main", "top-2.0", e.lib)
	e.push("secret", "hidden-thing")
	opts.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	h, err := web.New(svc, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) token(scope string, perm store.Perm) string {
	e.t.Helper()
	tok, _, err := e.svc.CreateToken(e.t.Context(), service.TokenSpec{Cache: scope, Perm: perm})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// push uploads a path of the given name with references (base names) and
// a hostile System, and returns its base name.
func (e *env) push(cache, name string, refs ...string) string {
	e.t.Helper()
	ctx := e.t.Context()
	c, err := e.svc.Operate(ctx, cache)
	if err != nil {
		e.t.Fatal(err)
	}
	f := filepath.Join(e.t.TempDir(), "f")
	if err := os.WriteFile(f, []byte(name+rand.Text()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := nar.DumpPath(&buf, f); err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	fh := nixbase32.EncodeToString(sum[:])
	if _, err := e.svc.PutObject(ctx, c, "nar/"+fh+".nar", bytes.NewReader(buf.Bytes()), int64(buf.Len()), service.ObjectMeta{}); err != nil {
		e.t.Fatal(err)
	}
	h := make([]byte, 20)
	_, _ = rand.Read(h)
	hash := nixbase32.EncodeToString(h)
	ni := fmt.Sprintf("StorePath: /nix/store/%s-%s\nURL: nar/%s.nar\nCompression: none\nNarHash: sha256:%s\nNarSize: %d\nReferences: %s\nSystem: %s\n",
		hash, name, fh, fh, buf.Len(), strings.Join(refs, " "), hostile)
	key, _ := nixkey.Parse(hash + ".narinfo")
	if _, err := e.svc.PutNarInfo(ctx, c, key, []byte(ni)); err != nil {
		e.t.Fatal(err)
	}
	return hash + "-" + name
}

// browser is a client with its own cookies.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// get fetches a page as a browser would and returns the status and body.
func (b *browser) get(path string) (int, http.Header, string) {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	return b.do(req)
}

func (b *browser) do(req *http.Request) (int, http.Header, string) {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// post sends a form, with headers as a browser on the page sends them.
func (b *browser) post(path string, form url.Values, hdr ...string) (int, http.Header, string) {
	b.e.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf returns the CSRF token of the first form of a page.
func csrf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in the page:\n%s", page)
	}
	return m[1]
}

// login logs the browser in with token and fails t unless it worked.
func (b *browser) login(token string) {
	b.e.t.Helper()
	_, _, page := b.get("/_larder/ui/login")
	code, hdr, body := b.post("/_larder/ui/login", url.Values{"csrf": {csrf(b.e.t, page)}, "token": {token}, "next": {"/"}})
	if code != http.StatusSeeOther || hdr.Get("Location") != "/" {
		b.e.t.Fatalf("login: %d %s\n%s", code, hdr.Get("Location"), body)
	}
}

// inlineCode finds what the CSP would block: script elements without src,
// style elements and attributes, event handler attributes, javascript: URLs.
var inlineCode = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>[^<]|<script>|<style|<[a-z][^>]*\s(?:style|on[a-z]+)=|<[a-z][^>]*javascript:`)

// checkPage fails t unless a page carries the dashboard's headers and no
// inline code.
func checkPage(t *testing.T, what string, hdr http.Header, body string) {
	t.Helper()
	want := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	if got := hdr.Get("Content-Security-Policy"); got != want {
		t.Errorf("%s: Content-Security-Policy %q", what, got)
	}
	if hdr.Get("X-Content-Type-Options") != "nosniff" || hdr.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s: headers %v", what, hdr)
	}
	if m := inlineCode.FindString(body); m != "" {
		t.Errorf("%s: inline code %q in the page", what, m)
	}
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
		t.Errorf("%s: hostile text unescaped:\n%s", what, body)
	}
}

func TestPublicPages(t *testing.T) {
	e := newEnv(t, web.Options{PublicURL: "http://cache.example.org"})
	b := e.browser()
	code, hdr, body := b.get("/")
	checkPage(t, "landing page", hdr, body)
	if code != 200 || !strings.Contains(body, "http://cache.example.org/main") || strings.Contains(body, "secret") ||
		strings.Contains(body, "beta") || !strings.Contains(body, "extra-trusted-public-keys") || !strings.Contains(body, "nixConfig") {
		t.Fatalf("landing page: %d\n%s", code, body)
	}
	code, hdr, body = b.get("/_larder/ui/caches/main")
	checkPage(t, "cache page", hdr, body)
	if code != 200 || !strings.Contains(body, `<dd id="path-count">2</dd>`) || !strings.Contains(body, e.top) ||
		!strings.Contains(body, "Log in with a token for this cache to see its pins") || strings.Contains(body, "/gc") {
		t.Fatalf("cache page: %d\n%s", code, body)
	}
	code, hdr, body = b.get("/_larder/ui/caches/main/paths/" + e.top[:32])
	checkPage(t, "path page", hdr, body)
	escaped := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&#39;&#34;&amp;`
	if code != 200 || !strings.Contains(body, escaped) || !strings.Contains(body, "/_larder/ui/caches/main/paths/"+e.lib[:32]) ||
		!strings.Contains(body, "2 paths") {
		t.Fatalf("path page: %d\n%s", code, body)
	}
	_, _, body = b.get("/_larder/ui/caches/main/paths/" + e.lib[:32])
	if !strings.Contains(body, `<ul id="referrers"`) || !strings.Contains(body, e.top) {
		t.Fatalf("path page of lib: no referrer top\n%s", body)
	}
	code, hdr, body = b.get("/_larder/ui/caches/main/search?q=TOP")
	checkPage(t, "search page", hdr, body)
	if code != 200 || !strings.Contains(body, e.top) || strings.Contains(body, e.lib) {
		t.Fatalf("search: %d\n%s", code, body)
	}
	q := `"><script>alert(1)</script>`
	code, hdr, body = b.get("/_larder/ui/caches/main/search?q=" + url.QueryEscape(q))
	checkPage(t, "search for a hostile string", hdr, body)
	if code != 200 || !strings.Contains(body, `&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`) || !strings.Contains(body, "nothing-found") {
		t.Fatalf("hostile search: %d\n%s", code, body)
	}
	for _, bad := range []string{strings.Repeat("x", service.MaxQuery+1), "a\x00b", ""} {
		if code, hdr, body := b.get("/_larder/ui/caches/main/search?q=" + url.QueryEscape(bad)); code != 400 {
			t.Errorf("search for %q: %d\n%s", bad, code, body)
		} else {
			checkPage(t, "refused search", hdr, body)
		}
	}
	for _, p := range []string{"/_larder/ui/caches/main/paths/nothere", "/_larder/ui/caches/main/paths/" + strings.Repeat("0", 32),
		"/_larder/ui/caches/main/nope", "/_larder/ui/caches/Bad_Name", "/_larder/ui/nope", "/_larder/ui/caches/main/paths/../../x"} {
		if code, _, _ := b.get(p); code != 404 && code != 400 {
			t.Errorf("GET %s: %d, want 404 or 400", p, code)
		}
	}
	req, _ := http.NewRequest("DELETE", e.srv.URL+"/_larder/ui/caches/main", nil)
	if code, _, _ := b.do(req); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE of a page: %d, want 405", code)
	}
	if web.Is(httptest.NewRequest("GET", "/", nil)) {
		t.Error("web.Is(GET / without Accept) is true: curl would get HTML")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept", "text/html")
	if !web.Is(r) || !web.Is(httptest.NewRequest("POST", "/_larder/ui/login", nil)) || web.Is(httptest.NewRequest("GET", "/main/nix-cache-info", nil)) {
		t.Error("web.Is routes the wrong requests")
	}
}

func TestPrivateCachesNeedASession(t *testing.T) {
	e := newEnv(t, web.Options{})
	anon := e.browser()
	// A private cache and one that does not exist look the same.
	priv, _, privBody := anon.get("/_larder/ui/caches/secret")
	none, _, noneBody := anon.get("/_larder/ui/caches/nosuch")
	if priv != 401 || none != 401 || strings.ReplaceAll(privBody, "secret", "nosuch") != noneBody {
		t.Fatalf("private cache %d, missing cache %d:\n%s\n%s", priv, none, privBody, noneBody)
	}
	for _, p := range []string{"/_larder/ui/caches/secret/history.json", "/_larder/ui/caches/secret/search?q=hid",
		"/_larder/ui/caches/main/gc", "/_larder/ui/caches/secret/gc"} {
		if code, _, body := anon.get(p); code != 401 || strings.Contains(body, "hidden-thing") {
			t.Errorf("anonymous GET %s: %d", p, code)
		}
	}

	reader := e.browser()
	reader.login(e.readToken)
	code, hdr, body := reader.get("/")
	checkPage(t, "landing page with a session", hdr, body)
	if code != 200 || !strings.Contains(body, "/_larder/ui/caches/secret") || strings.Contains(body, "beta") || !strings.Contains(body, "Log out") {
		t.Fatalf("landing page with a session: %d\n%s", code, body)
	}
	if code, _, body := reader.get("/_larder/ui/caches/secret"); code != 200 || !strings.Contains(body, "hidden-thing") {
		t.Fatalf("private cache with a session: %d\n%s", code, body)
	}
	// cache A's read token does not open cache B, nor A's collection page.
	for _, p := range []string{"/_larder/ui/caches/beta", "/_larder/ui/caches/secret/gc", "/_larder/ui/caches/beta/gc"} {
		if code, _, _ := reader.get(p); code != 403 {
			t.Errorf("GET %s with secret's read token: %d, want 403", p, code)
		}
	}

	admin := e.browser()
	admin.login(e.betaAdmin)
	if code, _, body := admin.get("/_larder/ui/caches/beta/gc"); code != 200 || !strings.Contains(body, "would remove") {
		t.Fatalf("collection page with an admin session: %d\n%s", code, body)
	}
	if code, _, _ := admin.get("/_larder/ui/caches/main/gc"); code != 403 {
		t.Errorf("collection page of main with beta's admin token: %d, want 403", code)
	}
	all := e.browser()
	all.login(e.admin)
	code, hdr, body = all.get("/_larder/ui/caches/main/gc")
	checkPage(t, "collection page", hdr, body)
	if code != 200 || !strings.Contains(body, `<dd id="removed">0 paths`) {
		t.Fatalf("collection page of main: %d\n%s", code, body)
	}
	if code, _, body := all.get("/_larder/ui/caches/main"); code != 200 || !strings.Contains(body, "No pins.") || !strings.Contains(body, "/gc") {
		t.Fatalf("cache page with an admin session: %d\n%s", code, body)
	}
	if strings.Contains(e.log.String(), e.readToken) || strings.Contains(e.log.String(), e.admin) {
		t.Fatalf("a token is in the log:\n%s", e.log.String())
	}
}

func TestLoginAndLogout(t *testing.T) {
	e := newEnv(t, web.Options{})
	b := e.browser()
	code, hdr, page := b.get("/_larder/ui/login?next=" + url.QueryEscape("/_larder/ui/caches/secret"))
	checkPage(t, "login page", hdr, page)
	if code != 200 || !strings.Contains(page, `type="password"`) {
		t.Fatalf("login page: %d\n%s", code, page)
	}
	token := csrf(t, page)
	// The wrong token: refused, said on the page, and never logged.
	wrong := "lrd_" + strings.Repeat("a", 39)
	code, _, body := b.post("/_larder/ui/login", url.Values{"csrf": {token}, "token": {wrong}})
	if code != 401 || !strings.Contains(body, "login-problem") {
		t.Fatalf("login with a wrong token: %d\n%s", code, body)
	}
	code, hdr, body = b.post("/_larder/ui/login", url.Values{"csrf": {token}, "token": {e.readToken},
		"next": {"/_larder/ui/caches/secret"}})
	if code != 303 || hdr.Get("Location") != "/_larder/ui/caches/secret" {
		t.Fatalf("login: %d %v\n%s", code, hdr, body)
	}
	var sessionCookie *http.Cookie
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == "larder_session" && c.Value != "" {
			sessionCookie = c
		}
	}
	if sessionCookie == nil || !sessionCookie.HttpOnly || sessionCookie.SameSite != http.SameSiteStrictMode ||
		sessionCookie.Path != "/" || sessionCookie.Secure || strings.Contains(sessionCookie.Value, e.readToken) ||
		sessionCookie.MaxAge <= 0 || sessionCookie.MaxAge > int(service.SessionTTL/time.Second) {
		t.Fatalf("session cookie: %+v", sessionCookie)
	}
	if strings.Contains(hdr.Get("Location"), e.readToken) {
		t.Fatal("the token is in a URL")
	}
	_, _, page = b.get("/_larder/ui/caches/secret")
	sessionCSRF := csrf(t, page)
	// Logging out needs the session's CSRF token.
	for _, form := range []url.Values{{}, {"csrf": {token}}, {"csrf": {sessionCSRF + "0"}}} {
		if code, _, _ := b.post("/_larder/ui/logout", form); code != 403 {
			t.Errorf("logout with %v: %d, want 403", form, code)
		}
	}
	if code, _, _ := b.get("/_larder/ui/caches/secret"); code != 200 {
		t.Fatalf("after refused logouts the session ended: %d", code)
	}
	if code, hdr, _ := b.get("/_larder/ui/logout"); code != 405 || hdr.Get("Allow") != "POST" {
		t.Errorf("GET logout: %d %v", code, hdr)
	}
	if code, _, _ := b.post("/_larder/ui/logout", url.Values{"csrf": {sessionCSRF}}); code != 303 {
		t.Fatalf("logout: %d", code)
	}
	if code, _, _ := b.get("/_larder/ui/caches/secret"); code != 401 {
		t.Fatalf("private cache after logout: %d", code)
	}
	// The old cookie, sent again, opens nothing, and is deleted.
	stale := e.browser()
	u, _ := url.Parse(e.srv.URL)
	stale.c.Jar.SetCookies(u, []*http.Cookie{sessionCookie})
	code, hdr, _ = stale.get("/_larder/ui/caches/secret")
	if code != 401 || !strings.Contains(hdr.Get("Set-Cookie"), "larder_session=;") {
		t.Fatalf("a logged out session's cookie: %d %v", code, hdr)
	}
	if strings.Contains(e.log.String(), e.readToken) || strings.Contains(e.log.String(), wrong) {
		t.Fatalf("a token is in the log:\n%s", e.log.String())
	}
}

func TestFormsRefuseForgery(t *testing.T) {
	e := newEnv(t, web.Options{})
	b := e.browser()
	_, _, page := b.get("/_larder/ui/login")
	token := csrf(t, page)
	good := url.Values{"csrf": {token}, "token": {e.readToken}}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  []string
		code int
	}{
		{"no CSRF token", url.Values{"token": {e.readToken}}, nil, 403},
		{"another CSRF token", url.Values{"csrf": {strings.Repeat("0", 48)}, "token": {e.readToken}}, nil, 403},
		{"from another site", good, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"from another origin", good, []string{"Origin", "https://evil.example"}, 403},
		{"as JSON", good, []string{"Content-Type", "application/json"}, 415},
		{"too large", url.Values{"csrf": {token}, "token": {strings.Repeat("x", 5000)}}, nil, 413},
	} {
		code, hdr, body := b.post("/_larder/ui/login", tc.form, tc.hdr...)
		if code != tc.code || strings.Contains(hdr.Get("Set-Cookie"), "larder_session=lrs_") {
			t.Errorf("login %s: %d, want %d\n%s", tc.name, code, tc.code, body)
		}
	}
	// A browser without the login cookie (another site's form) is refused.
	other := e.browser()
	if code, _, _ := other.post("/_larder/ui/login", good); code != 403 {
		t.Errorf("login without the CSRF cookie: %d, want 403", code)
	}
	if code, _, _ := b.get("/_larder/ui/caches/secret"); code != 401 {
		t.Errorf("a refused login opened a session: %d", code)
	}
	// Bad cookies are no session, and the page still answers.
	for _, v := range []string{"x", "lrs_" + strings.Repeat("a", 52), strings.Repeat("é", 100)} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/_larder/ui/caches/main", nil)
		req.AddCookie(&http.Cookie{Name: "larder_session", Value: url.QueryEscape(v)})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("a bad session cookie %q: %d %v", v, resp.StatusCode, resp.Header)
		}
	}
}

func TestSecureCookiesOverHTTPS(t *testing.T) {
	e := newEnv(t, web.Options{PublicURL: "https://cache.example.org"})
	b := e.browser()
	code, hdr, page := b.get("/_larder/ui/login")
	if code != 200 || !strings.Contains(hdr.Get("Set-Cookie"), "__Host-larder_login=") || !strings.Contains(hdr.Get("Set-Cookie"), "Secure") {
		t.Fatalf("login page over https: %v", hdr)
	}
	// The test client speaks plain HTTP, so it does not send Secure
	// cookies back: send the form's cookie by hand.
	req, _ := http.NewRequest("POST", e.srv.URL+"/_larder/ui/login",
		strings.NewReader(url.Values{"csrf": {csrf(t, page)}, "token": {e.readToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://cache.example.org")
	req.AddCookie(&http.Cookie{Name: "__Host-larder_login", Value: csrf(t, page)})
	code, hdr, _ = b.do(req)
	sc := hdr.Get("Set-Cookie")
	if code != 303 || !strings.Contains(hdr.Values("Set-Cookie")[len(hdr.Values("Set-Cookie"))-1], "__Host-larder_session=lrs_") {
		t.Fatalf("login over https: %d %v", code, hdr)
	}
	for _, c := range hdr.Values("Set-Cookie") {
		if !strings.Contains(c, "Secure") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
			t.Errorf("cookie %q, %q", c, sc)
		}
	}
}

func TestHistoryAndAssets(t *testing.T) {
	e := newEnv(t, web.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() { defer close(ran); e.svc.Run(ctx, time.Hour) }()
	t.Cleanup(func() { cancel(); <-ran })
	for range 3 {
		e.svc.CountLookup("main", true)
	}
	e.svc.CountLookup("main", false)
	var hist struct {
		T        []int64    `json:"t"`
		Bytes    []int64    `json:"bytes"`
		Paths    []int64    `json:"paths"`
		Requests []float64  `json:"requests"`
		HitRatio []*float64 `json:"hitRatio"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(e.srv.URL + "/_larder/ui/caches/main/history.json")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("history: %d %v", resp.StatusCode, resp.Header)
		}
		err = json.NewDecoder(resp.Body).Decode(&hist)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for i, r := range hist.HitRatio {
			found = found || r != nil && *r == 0.75 && hist.Paths[i] == 2 && hist.Requests[i] == 4*3600
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history has no sample of the lookups: %+v", hist)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(hist.T); len(hist.Bytes) != n || len(hist.Paths) != n || len(hist.Requests) != n || len(hist.HitRatio) != n {
		t.Fatalf("history series differ in length: %+v", hist)
	}

	b := e.browser()
	_, _, page := b.get("/_larder/ui/caches/main")
	for _, m := range regexp.MustCompile(`(?:src|href)="(/_larder/ui/assets/[^"]+)"`).FindAllStringSubmatch(page, -1) {
		u := strings.ReplaceAll(m[1], "&amp;", "&")
		code, hdr, body := b.get(u)
		ext := map[bool]string{true: "text/javascript; charset=utf-8", false: "text/css; charset=utf-8"}[strings.Contains(u, ".js")]
		if code != 200 || hdr.Get("Content-Type") != ext || !strings.Contains(hdr.Get("Cache-Control"), "immutable") || len(body) == 0 {
			t.Errorf("GET %s: %d %v", u, code, hdr)
		}
	}
	for _, p := range []string{"/_larder/ui/assets/nope.js", "/_larder/ui/assets/../web.go", "/_larder/ui/assets/"} {
		if code, _, _ := b.get(p); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	if code, _, body := b.get("/_larder/ui/assets/vendor/uplot/LICENSE"); code != 200 || !strings.Contains(body, "MIT") {
		t.Errorf("uPlot's licence: %d", code)
	}
}

// TestSearchEveryCache: the landing page's search looks in every cache the
// visitor may see, and only in those.
func TestSearchEveryCache(t *testing.T) {
	e := newEnv(t, web.Options{})
	e.push("beta", "top-3.0")
	anon := e.browser()
	code, hdr, body := anon.get("/")
	if code != 200 || !strings.Contains(body, `action="/_larder/ui/search"`) {
		t.Fatalf("landing page has no search of every cache: %d\n%s", code, body)
	}
	code, hdr, body = anon.get("/_larder/ui/search?q=top")
	checkPage(t, "search of every cache", hdr, body)
	if code != 200 || !strings.Contains(body, `id="found-main"`) || !strings.Contains(body, e.top) ||
		strings.Contains(body, "found-beta") || strings.Contains(body, "top-3.0") {
		t.Fatalf("anonymous search of every cache: %d\n%s", code, body)
	}
	if code, _, body := anon.get("/_larder/ui/search?q=hidden"); code != 200 || strings.Contains(body, "hidden-thing") ||
		!strings.Contains(body, "nothing-found") {
		t.Fatalf("anonymous search for a private path: %d\n%s", code, body)
	}
	reader := e.browser()
	reader.login(e.readToken)
	if code, _, body := reader.get("/_larder/ui/search?q=hidden"); code != 200 || !strings.Contains(body, "hidden-thing") ||
		!strings.Contains(body, "found-secret") {
		t.Fatalf("search with a session of secret: %d\n%s", code, body)
	}
	if _, _, body := reader.get("/_larder/ui/search?q=top"); strings.Contains(body, "top-3.0") {
		t.Fatalf("secret's reader found a path of beta:\n%s", body)
	}
	q := `"><script>alert(1)</script>`
	code, hdr, body = anon.get("/_larder/ui/search?q=" + url.QueryEscape(q))
	checkPage(t, "hostile search of every cache", hdr, body)
	if code != 200 || !strings.Contains(body, `&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`) {
		t.Fatalf("hostile search of every cache: %d\n%s", code, body)
	}
	for _, bad := range []string{strings.Repeat("x", service.MaxQuery+1), "a\x00b", ""} {
		if code, _, body := anon.get("/_larder/ui/search?q=" + url.QueryEscape(bad)); code != 400 {
			t.Errorf("search of every cache for %q: %d\n%s", bad, code, body)
		}
	}
}
