package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which ./test.sh installs.
const chromiumPath = "/usr/bin/chromium"

// needChromium skips the test when Chromium is not installed, and fails it
// instead under LARDER_REQUIRE_CHROMIUM=1, as ./test.sh sets.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		if os.Getenv("LARDER_REQUIRE_CHROMIUM") == "1" {
			t.Fatalf("chromium is not installed (apt-get install chromium): %v", err)
		}
		t.Skip("chromium is not installed; ./test.sh installs it")
	}
}

// screenshotDir is where the browser test saves its screenshots:
// $LARDER_TEST_OUTPUT/web, or larder-web-screenshots in the temporary
// directory. It is emptied first, and kept after the test.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "larder-web-screenshots")
	if out := os.Getenv("LARDER_TEST_OUTPUT"); out != "" {
		dir = filepath.Join(out, "web")
	}
	must(t, os.RemoveAll(dir))
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

// chrome is a headless Chromium tab that records every console error,
// uncaught exception, error of the browser log and violation of the
// Content-Security-Policy.
type chrome struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	mu   sync.Mutex
	errs []string
	// refused are the pages the test expects a refusal of: the browser
	// logs their status as an error of the network.
	refused map[string]bool
}

// cspListener reports each violation of the Content-Security-Policy as a
// console error, which the test then sees. Chromium runs it in every page
// before the page's own scripts, and the page's policy does not apply to it.
const cspListener = `document.addEventListener("securitypolicyviolation", function (e) {
	console.error("CSP violation: " + e.violatedDirective + " blocked " + e.blockedURI + " at " + e.sourceFile + ":" + e.lineNumber);
});`

func newChrome(t *testing.T) *chrome {
	t.Helper()
	needChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	c := &chrome{t: t, ctx: ctx, dir: screenshotDir(t), refused: map[string]bool{}}
	messages := chromedp.Console(ctx)
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				c.mu.Lock()
				if m.Source != "network" || !c.refused[m.URL] {
					c.errs = append(c.errs, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				}
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// refuse says that the page at url is to be refused (401, 403).
func (c *chrome) refuse(url string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused[url] = true
	return url
}

// do runs actions in the tab, with a time limit, and fails the test on
// error.
func (c *chrome) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](c *chrome, expr string) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text returns the text of the first element matching a CSS selector.
func (c *chrome) text(sel string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		c.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// screenshot saves the whole page as NAME.png.
func (c *chrome) screenshot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatalf("screenshot %s: %v", name, err)
	}
	must(c.t, os.WriteFile(filepath.Join(c.dir, name+".png"), png, 0o644))
}

// noErrors fails the test if the pages so far wrote any error.
func (c *chrome) noErrors(after string) {
	c.t.Helper()
	time.Sleep(200 * time.Millisecond) // the last messages trail the page
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) > 0 {
		c.t.Fatalf("after %s, the browser reported:\n%s", after, strings.Join(c.errs, "\n"))
	}
}

// noOverflow fails the test if the page is wider than the window.
func (c *chrome) noOverflow(what string) {
	c.t.Helper()
	widths := eval[[]int](c, `[document.documentElement.scrollWidth, window.innerWidth]`)
	if widths[0] > widths[1] {
		c.t.Errorf("%s is %d px wide in a window of %d px", what, widths[0], widths[1])
	}
}

// drawnPixels counts the pixels drawn on each canvas of the plots.
const drawnPixels = `Array.from(document.querySelectorAll("#plots canvas")).map(function (c) {
	var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, n = 0;
	for (var i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
	return n;
})`

// TestDashboardInBrowser loads every page of the dashboard in headless
// Chromium against a server holding a real pushed closure, checks what it
// shows, logs in to see a private cache and the collection page, logs out,
// and checks the pages at a phone's width and without JavaScript. Any
// console error or CSP violation fails it. The screenshots stay in
// screenshotDir.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	needChromium(t)
	srv := startServer(t, "--history-interval", "1s")
	seed := "web-" + randomHex(4)
	c := n.buildClosure(seed)
	srv.cli(t, "cache", "create", "vault", "--private")
	pusher := n.withNetrc(srv.Host, srv.AdminToken)
	pusher.run("nix", "copy", "--to", srv.cacheURL("main")+"?compression=zstd&write-nar-listing=1", c.Top)
	tree := n.addTree("vault-" + seed)
	pusher.run("nix", "copy", "--to", srv.cacheURL("vault")+"?compression=none", tree)
	srv.cli(t, "pin", "add", "main", c.Top, "--name", "release")
	readVault := srv.token(t, "vault", "read")
	// Lookups for the history: hits and a miss.
	for _, p := range c.Paths {
		if code, _ := httpDo(t, "GET", srv.cacheURL("main")+"/"+hashPart(p)+".narinfo", "", nil); code != 200 {
			t.Fatalf("narinfo of %s: %d", p, code)
		}
	}
	httpDo(t, "GET", srv.cacheURL("main")+"/"+strings.Repeat("0", 32)+".narinfo", "", nil)
	waitHistory(t, srv, len(c.Paths))

	b := newChrome(t)
	ui := srv.URL + "/_larder/ui/"
	top := filepath.Base(c.Top)

	// The landing page: the public cache with its snippets, not the
	// private one.
	b.do("landing page", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("section.card")))
	landing := b.text("main")
	if !strings.Contains(landing, srv.URL+"/main") || !strings.Contains(landing, srv.pubkey(t, "main")) || strings.Contains(landing, "vault") {
		t.Fatalf("landing page:\n%s", landing)
	}
	b.screenshot("landing")

	// The cache page: its name, path count and plots, drawn.
	b.do("cache page", chromedp.Navigate(ui+"caches/main"), chromedp.WaitVisible(chromedp.CSS("#plots.drawn")))
	if name := b.text("#cache-name"); name != "main" {
		t.Errorf("cache page names %q", name)
	}
	if count := b.text("#path-count"); count != fmt.Sprint(len(c.Paths)) {
		t.Errorf("cache page counts %q paths, want %d", count, len(c.Paths))
	}
	pixels := eval[[]int](b, drawnPixels)
	if len(pixels) != 4 {
		t.Fatalf("%d plot canvases, want 4", len(pixels))
	}
	for i, px := range pixels {
		if px < 100 {
			t.Errorf("plot %d has %d pixels drawn", i, px)
		}
	}
	if recent := b.text("#recent"); !strings.Contains(recent, top) {
		t.Errorf("recent pushes lack %s:\n%s", top, recent)
	}
	if pins := b.text("main"); !strings.Contains(pins, "Log in with a token") {
		t.Errorf("pins are shown to a visitor without a session:\n%s", pins)
	}
	b.screenshot("cache")
	b.noErrors("the cache page")

	// Search finds the top path; its page shows the narinfo and links its
	// references.
	b.do("search", chromedp.SendKeys(chromedp.CSS("#q"), "top-"+seed), chromedp.Submit(chromedp.CSS("form.search")),
		chromedp.WaitVisible(chromedp.CSS("#found")))
	if found := b.text("#found"); !strings.Contains(found, top) {
		t.Fatalf("search for top-%s found:\n%s", seed, found)
	}
	b.screenshot("search")
	b.do("path page", chromedp.Click(chromedp.CSS("#found a")), chromedp.WaitVisible(chromedp.CSS("#narinfo")))
	if fields := b.text("#narinfo"); !strings.Contains(fields, c.Top) || !strings.Contains(fields, "main.") {
		t.Errorf("path page's narinfo:\n%s", fields)
	}
	if closure := b.text("#closure"); !strings.HasPrefix(closure, fmt.Sprint(len(c.Paths), " paths")) {
		t.Errorf("closure of the top path: %q", closure)
	}
	b.screenshot("path")
	refs := eval[int](b, `document.querySelectorAll("#references a").length`)
	if refs != 2 {
		t.Errorf("the top path links %d references, want 2", refs)
	}
	b.do("a referenced path", chromedp.Click(chromedp.CSS("#references a")), chromedp.WaitVisible(chromedp.CSS("#referrers")))
	if referrers := b.text("#referrers"); !strings.Contains(referrers, top) && !strings.Contains(referrers, "mid-"+seed) {
		t.Errorf("referrers of a reference of the top path:\n%s", referrers)
	}
	// The tree has a listing.
	treePath := ""
	for _, p := range c.Paths {
		if strings.Contains(p, "tree-"+seed) {
			treePath = p
		}
	}
	b.do("the tree's page", chromedp.Navigate(ui+"caches/main/paths/"+hashPart(treePath)), chromedp.WaitVisible(chromedp.CSS("#listing")))
	if listing := b.text("#listing"); !strings.Contains(listing, "/run.sh") || !strings.Contains(listing, "executable") {
		t.Errorf("listing of the tree:\n%s", listing)
	}
	b.screenshot("listing")
	b.noErrors("the path pages")

	// The private cache is invisible, then visible with its read token,
	// until logout.
	b.do("private cache", chromedp.Navigate(b.refuse(ui+"caches/vault")), chromedp.WaitVisible(chromedp.CSS("#error-message")))
	b.do("login", chromedp.Navigate(ui+"login?next=/_larder/ui/caches/vault"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), readVault), chromedp.Submit(chromedp.CSS("form.login")),
		chromedp.WaitVisible(chromedp.CSS("#cache-name")))
	if name := b.text("#cache-name"); !strings.HasPrefix(name, "vault") {
		t.Fatalf("after login, the page is of %q", name)
	}
	if loc := eval[string](b, "location.href"); strings.Contains(loc, readVault) {
		t.Fatalf("the token is in the URL %s", loc)
	}
	if recent := b.text("#recent"); !strings.Contains(recent, filepath.Base(tree)) {
		t.Errorf("the private cache lacks its path:\n%s", recent)
	}
	b.screenshot("private")
	b.do("collection page with a read token", chromedp.Navigate(b.refuse(ui+"caches/vault/gc")), chromedp.WaitVisible(chromedp.CSS("#error-message")))
	b.do("landing page with a session", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("form.logout")))
	if landing := b.text("main"); !strings.Contains(landing, "vault") {
		t.Errorf("the landing page with a session lacks vault:\n%s", landing)
	}
	b.do("logout", chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.CSS("a.login")))
	b.do("private cache after logout", chromedp.Navigate(ui+"caches/vault"), chromedp.WaitVisible(chromedp.CSS("#error-message")))
	if msg := b.text("#error-message"); !strings.Contains(msg, "token is needed") {
		t.Errorf("private cache after logout: %q", msg)
	}

	// An admin sees what the next collection would remove.
	b.do("admin login", chromedp.Navigate(ui+"login?next=/_larder/ui/caches/main/gc"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), srv.AdminToken), chromedp.Submit(chromedp.CSS("form.login")),
		chromedp.WaitVisible(chromedp.CSS("#removed")))
	if pins := b.text("#gc-pins"); !strings.Contains(pins, "release") || !strings.Contains(pins, fmt.Sprint(len(c.Paths), " paths")) {
		t.Errorf("the collection page's pins:\n%s", pins)
	}
	b.screenshot("gc")
	b.do("logout", chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.CSS("a.login")))
	b.noErrors("logging in and out")

	// At a phone's width nothing is wider than the screen.
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	for _, p := range []struct{ name, url, wait string }{
		{"phone-landing", srv.URL + "/", "section.card"},
		{"phone-cache", ui + "caches/main", "#plots.drawn"},
		{"phone-path", ui + "caches/main/paths/" + hashPart(c.Top), "#narinfo"},
		{"phone-listing", ui + "caches/main/paths/" + hashPart(treePath), "#listing"},
	} {
		b.do(p.name, chromedp.Navigate(p.url), chromedp.WaitVisible(chromedp.CSS(p.wait)))
		b.noOverflow(p.name)
		b.screenshot(p.name)
	}
	b.noErrors("the pages at a phone's width")

	// Without JavaScript the tables are there and the plots say why not.
	b.do("no JavaScript", chromedp.EmulateViewport(1280, 900),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}),
		chromedp.Navigate(ui+"caches/main"), chromedp.WaitVisible(chromedp.CSS("#recent")))
	if rows := b.text("#recent"); !strings.Contains(rows, top) {
		t.Errorf("without JavaScript the recent pushes lack %s:\n%s", top, rows)
	}
	if msg := b.text("#plots .nojs"); !strings.Contains(msg, "need JavaScript") {
		t.Errorf("without JavaScript the plots say %q", msg)
	}
	b.screenshot("nojs-cache")
	b.noErrors("the pages without JavaScript")

	if strings.Contains(srv.log.String(), readVault) || strings.Contains(srv.log.String(), srv.AdminToken) {
		t.Fatal("a token pasted to log in is in the server's log")
	}
	t.Logf("screenshots in %s", b.dir)
}

// waitHistory waits until the history of main has two samples and the
// last one counts paths paths and the lookups made.
func waitHistory(t *testing.T, srv *server, paths int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var h struct {
			T        []int64    `json:"t"`
			Paths    []int64    `json:"paths"`
			HitRatio []*float64 `json:"hitRatio"`
		}
		code, body := httpDo(t, "GET", srv.URL+"/_larder/ui/caches/main/history.json", "", nil)
		if code == 200 && json.Unmarshal([]byte(body), &h) == nil && len(h.T) >= 2 && h.Paths[len(h.Paths)-1] == int64(paths) {
			for _, r := range h.HitRatio {
				if r != nil && *r > 0 {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the history of main does not show the pushes and lookups: %d %s", code, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
