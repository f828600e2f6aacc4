package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// crashPushers is how many nix copy commands push at once in each round of
// TestCrashLoop.
const crashPushers = 4

// TestCrashLoop pushes closures with several concurrent nix copy commands
// while the server is killed with SIGKILL at random moments and started
// again on the same data directory, round after round
// (LARDER_CRASH_ROUNDS, default 20). Each round builds new closures with
// real Nix, sharing paths between the pushes and with earlier rounds; each
// push also retries the previous round's closure, as a CI job would after
// a failure. After every restart:
//
//   - no temporary file of an upload outlives the restart;
//   - every narinfo served for the pushed paths names a NAR file that is
//     served, whole, with the FileSize and FileHash the narinfo gives;
//   - the newly served paths substitute, with their whole closure, into an
//     empty store with larder as the only substituter and its key as the
//     only trusted one;
//   - what was served before the crash is still served, unchanged.
//
// After the last round every push runs again to completion and every
// closure substitutes.
func TestCrashLoop(t *testing.T) {
	t.Parallel()
	rounds := 20
	if v := os.Getenv("LARDER_CRASH_ROUNDS"); v != "" {
		r, err := strconv.Atoi(v)
		if err != nil || r < 1 {
			t.Fatalf("LARDER_CRASH_ROUNDS=%q is not a positive number", v)
		}
		rounds = r
	}
	srv := startServer(t)
	n := needNix(t)
	key := srv.pubkey(t, "main")
	token := srv.token(t, "main", "write")
	url := srv.cacheURL("main") + "?compression=zstd"
	g := newCrashGraph(n, "cl"+randomHex(3))
	t.Cleanup(g.deleteLocal)

	// Pushers of the rounds give up at the first failed request (instead of
	// retrying for seconds), so that a killed server ends them at once.
	pushers := make([]*nix, crashPushers)
	for i := range pushers {
		pushers[i] = needNix(t).withNetrc(srv.Host, token)
		pushers[i].extra = append(pushers[i].extra, "download-attempts = 1")
	}

	// Round 0 measures how long the concurrent pushes take without a kill,
	// once a first push of base has warmed the server and Nix up.
	const batch = 25 // rounds built by one nix-build
	g.build(0, min(rounds, batch))
	pushers[0].run("nix", "copy", "--to", url, g.paths["base"])
	start := time.Now()
	res := runPushes(pushers, url, g.roundTops(0), nil)
	pushTime := time.Since(start)
	for i, r := range res {
		if r.err != nil && !strings.Contains(r.stderr, "coroutine has finished") {
			t.Fatalf("push %d of round 0, with no kill: %v\n%s", i, r.err, r.stderr)
		}
	}
	t.Logf("round 0: %d concurrent pushes of %d paths (%.1f MB) took %v",
		crashPushers, len(g.rounds[0]), float64(g.roundBytes(0))/1e6, pushTime.Round(time.Millisecond))
	v := newCrashVerifier(t, srv, key, g)
	v.checkRound(0, "")
	if t.Failed() {
		t.FailNow()
	}

	var interruptedRounds, totalInterrupted int
	loopStart := time.Now()
	for r := 1; r <= rounds; r++ {
		if r%batch == 1 && r > 1 {
			g.build(r, min(rounds, r+batch-1))
		}
		tops := g.roundTops(r)
		prev := g.roundTops(r - 1)
		// Kill at a moment drawn evenly over the push time of round 0 and
		// a little beyond, from nix copy's start-up to its last narinfo.
		delay := time.Duration(rand.Int64N(int64(pushTime) * 11 / 10))
		done := make(chan []pushResult, 1)
		go func() { done <- runPushes(pushers, url, tops, prev) }()
		var killedLog string
		var res []pushResult
		when := "mid-push"
		select {
		case <-time.After(delay):
			srv.kill(t)
			killedLog = srv.log.String()
			select {
			case res = <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("round %d: pushes still running 60s after the server was killed", r)
			}
		case res = <-done:
			// Every push finished first: kill the idle server.
			when = "after the pushes"
			delay = time.Duration(0)
			srv.kill(t)
			killedLog = srv.log.String()
		}
		// A push that failed on Nix 2.8's race with another push ended
		// by itself; the others that failed were interrupted by the kill.
		interrupted, raced := 0, 0
		for _, pr := range res {
			switch {
			case pr.err == nil:
			case strings.Contains(pr.stderr, "coroutine has finished"):
				raced++
			default:
				interrupted++
			}
		}
		if interrupted > 0 {
			interruptedRounds++
			totalInterrupted += interrupted
		}
		if refused := refusedPuts(killedLog); len(refused) > 0 {
			t.Errorf("round %d: the server refused uploads before it was killed:\n%s", r, strings.Join(refused, "\n"))
		}
		if errs := grepLines(killedLog, "level=ERROR"); len(errs) > 0 {
			t.Errorf("round %d: the server logged errors before it was killed:\n%s", r, strings.Join(errs, "\n"))
		}

		srv = startServerOn(t, srv.Data, srv.Addr)
		if left := tempLeftovers(t, srv.Data); len(left) > 0 {
			t.Errorf("round %d: temporary files outlived the restart: %v\nkilled server's log:\n%s\nrestarted server's log:\n%s",
				r, left, tail(killedLog, 30), srv.log.String())
		}
		reclaimed := 0
		if m := reclaimedRE.FindStringSubmatch(srv.log.String()); m != nil {
			reclaimed, _ = strconv.Atoi(m[1])
		}
		st := v.checkRound(r, killedLog)
		killedAt := fmt.Sprintf("%d ms", delay.Milliseconds())
		if when != "mid-push" {
			killedAt = when
		}
		t.Logf("round %d: killed %s; pushes interrupted %d/%d (and %d ended by Nix's race); %d temp files reclaimed; narinfos served %d of %d checked (%d new, verified by substitution; %d earlier, unchanged)",
			r, killedAt, interrupted, crashPushers, raced, reclaimed, st.served, st.checked, st.fresh, st.stable)
		if t.Failed() {
			t.Fatalf("round %d broke an invariant; stopping", r)
		}
	}
	t.Logf("%d rounds in %v; %d rounds interrupted pushes (%d pushes in all)",
		rounds, time.Since(loopStart).Round(time.Millisecond), interruptedRounds, totalInterrupted)
	if interruptedRounds == 0 {
		t.Errorf("no kill interrupted a push in %d rounds: the kills did not test anything", rounds)
	}

	// Every push runs again, to completion, with Nix's usual retries.
	finalStart := time.Now()
	finishers := make([]*nix, crashPushers)
	for i := range finishers {
		finishers[i] = needNix(t).withNetrc(srv.Host, token)
	}
	all := make([][]string, crashPushers)
	for r := 0; r <= rounds; r++ {
		for i, top := range g.roundTops(r) {
			all[i] = append(all[i], top)
		}
	}
	// All at once first; a push that hit Nix 2.8's race with another runs
	// again on its own, where it cannot race.
	for i, pr := range runPushesMany(finishers, url, all) {
		if pr.err != nil && !strings.Contains(pr.stderr, "coroutine has finished") {
			t.Fatalf("final push %d: %v\n%s\nserver log:\n%s", i, pr.err, pr.stderr, tail(srv.log.String(), 30))
		}
		if pr.err != nil {
			if _, errOut, err := finishers[i].try(append([]string{"nix", "copy", "--to", url}, all[i]...)...); err != nil {
				t.Fatalf("final push %d, run alone after Nix's race: %v\n%s\nserver log:\n%s", i, err, errOut, tail(srv.log.String(), 30))
			}
		}
	}
	if errs := grepLines(srv.log.String(), "level=ERROR"); len(errs) > 0 {
		t.Errorf("the server logged errors while serving the final pushes:\n%s", strings.Join(errs, "\n"))
	}
	if refused := refusedPuts(srv.log.String()); len(refused) > 0 {
		t.Errorf("the server refused uploads of the final pushes:\n%s", strings.Join(refused, "\n"))
	}
	// Chunking, in the background, may still be writing a pack: give it
	// time to finish before counting what is left.
	left := tempLeftovers(t, srv.Data)
	for deadline := time.Now().Add(15 * time.Second); len(left) > 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		left = tempLeftovers(t, srv.Data)
	}
	if len(left) > 0 {
		t.Errorf("temporary files left after every push completed: %v", left)
	}
	var missing []string
	for _, p := range g.allPaths() {
		if code := srv.narInfoStatus(t, "main", p); code != 200 {
			missing = append(missing, fmt.Sprintf("%s: %d", p, code))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("after the final pushes %d narinfos are not served:\n%s", len(missing), strings.Join(missing, "\n"))
	}
	// Every closure substitutes; a chroot store per few rounds keeps the
	// disk use bounded.
	for lo := 0; lo <= rounds; lo += 10 {
		var roots []string
		for r := lo; r <= min(rounds, lo+9); r++ {
			roots = append(roots, g.roundTops(r)...)
		}
		if err := v.substituteAll(roots); err != "" {
			t.Errorf("after the final pushes, rounds %d-%d: %s", lo, min(rounds, lo+9), err)
		}
	}
	t.Logf("final pushes and substitution of all %d paths took %v", len(g.allPaths()), time.Since(finalStart).Round(time.Millisecond))
}

// kill kills the server with SIGKILL and waits for it to be gone.
func (s *server) kill(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("larder exited before it was killed (%v):\n%s", s.waitErr, tail(s.log.String(), 30))
	default:
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill larder: %v", err)
	}
	<-s.exited
}

// tempLeftovers lists the temporary files in the data directory: those of
// uploads to the local blob store (blobs/tmp~) and those of the atomic
// writes next to the admin token (.tmp-*).
func tempLeftovers(t *testing.T, data string) []string {
	t.Helper()
	var out []string
	tmp := filepath.Join(data, "blobs", "tmp~")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatalf("read %s: %v", tmp, err)
	}
	for _, e := range entries {
		out = append(out, filepath.Join("blobs", "tmp~", e.Name()))
	}
	more, err := filepath.Glob(filepath.Join(data, ".tmp-*"))
	must(t, err)
	for _, m := range more {
		out = append(out, filepath.Base(m))
	}
	return out
}

// pushResult is how one nix copy ended.
type pushResult struct {
	err    error
	stderr string
}

// runPushes runs one nix copy per pusher at once, of tops[i] (and of
// prev[i] first, when prev is not nil), and waits for all of them.
func runPushes(pushers []*nix, url string, tops, prev []string) []pushResult {
	paths := make([][]string, len(pushers))
	for i := range pushers {
		if prev != nil {
			paths[i] = append(paths[i], prev[i])
		}
		paths[i] = append(paths[i], tops[i])
	}
	return runPushesMany(pushers, url, paths)
}

// runPushesMany runs nix copy of paths[i] with pushers[i], all at once.
func runPushesMany(pushers []*nix, url string, paths [][]string) []pushResult {
	res := make([]pushResult, len(pushers))
	done := make(chan struct{})
	for i, p := range pushers {
		go func() {
			defer func() { done <- struct{}{} }()
			_, errOut, err := p.try(append([]string{"nix", "copy", "--to", url}, paths[i]...)...)
			res[i] = pushResult{err, errOut}
		}()
	}
	for range pushers {
		<-done
	}
	return res
}

// crashGraph is the store paths of TestCrashLoop. Each round r has a path
// common (referring to a path base shared by every round), a and b
// (referring to common), and one top per pusher: t0 refers to a, t1 to a and
// b, t2 to b, t3 to b and base. Pushes of a round thus share common, a and
// b, and every push shares base.
type crashGraph struct {
	n      *nix
	seed   string
	paths  map[string]string   // node name ("base", "r3-t1") -> store path
	refs   map[string][]string // node name -> the names it refers to
	sizes  map[string]int
	rounds map[int][]string // round -> its node names
	hashes map[string]string
}

func newCrashGraph(n *nix, seed string) *crashGraph {
	g := &crashGraph{n: n, seed: seed, paths: map[string]string{}, refs: map[string][]string{},
		sizes: map[string]int{}, rounds: map[int][]string{}, hashes: map[string]string{}}
	g.node(-1, "base", 1_000_000)
	return g
}

func (g *crashGraph) node(round int, name string, size int, refs ...string) {
	g.sizes[name] = size
	g.refs[name] = refs
	if round >= 0 {
		g.rounds[round] = append(g.rounds[round], name)
	}
}

// build builds the paths of rounds lo to hi (and base) with one nix-build.
func (g *crashGraph) build(lo, hi int) {
	g.n.t.Helper()
	var names []string
	if _, ok := g.paths["base"]; !ok {
		names = append(names, "base")
	}
	for r := lo; r <= hi; r++ {
		p := fmt.Sprintf("r%d-", r)
		g.node(r, p+"common", 500_000, "base")
		g.node(r, p+"a", 1_000_000, p+"common")
		g.node(r, p+"b", 1_000_000, p+"common")
		g.node(r, p+"t0", 3_000_000+r%7*100_000, p+"a")
		g.node(r, p+"t1", 3_500_000, p+"a", p+"b")
		g.node(r, p+"t2", 2_500_000+r%5*200_000, p+"b")
		g.node(r, p+"t3", 4_000_000, p+"b", "base")
		names = append(names, g.rounds[r]...)
	}
	ident := func(name string) string { return "n_" + strings.ReplaceAll(name, "-", "_") }
	var b strings.Builder
	b.WriteString("let\n  sys = builtins.currentSystem;\n")
	b.WriteString("  mk = name: size: refs: derivation { name = \"crash-" + g.seed + "-${name}\"; system = sys; builder = \"/bin/sh\";\n")
	b.WriteString("    args = [ \"-c\" \"/usr/bin/head -c ${toString size} /dev/urandom > $out; echo ${toString refs} >> $out\" ]; };\n")
	// Every node is defined, so that references to earlier batches resolve
	// to the same (already built) derivations.
	all := make([]string, 0, len(g.sizes))
	for name := range g.sizes {
		all = append(all, name)
	}
	sort.Strings(all)
	for _, name := range all {
		var refs []string
		for _, r := range g.refs[name] {
			refs = append(refs, ident(r))
		}
		fmt.Fprintf(&b, "  %s = mk %q %d [ %s ];\n", ident(name), name, g.sizes[name], strings.Join(refs, " "))
	}
	b.WriteString("in {")
	for _, name := range names {
		fmt.Fprintf(&b, " inherit %s;", ident(name))
	}
	b.WriteString(" }\n")
	out := lines(g.n.run("nix-build", "--no-out-link", "--max-jobs", "4", "-E", b.String()))
	prefix := "crash-" + g.seed + "-"
	var built []string
	for _, p := range out {
		name, ok := strings.CutPrefix(filepath.Base(p)[33:], prefix)
		if !ok {
			g.n.t.Fatalf("nix-build printed %s, not a path of this test", p)
		}
		g.paths[name] = p
		built = append(built, p)
	}
	for _, name := range names {
		if _, ok := g.paths[name]; !ok {
			g.n.t.Fatalf("nix-build printed no path for %s: %v", name, out)
		}
	}
	for p, h := range g.n.narHashes("", built) {
		g.hashes[p] = h
	}
	// Check the graph against what Nix recorded, once.
	if lo == 0 {
		for _, name := range g.rounds[0] {
			if got := g.n.closureOf(g.paths[name]); !sameSet(got, g.closure(g.paths[name])) {
				g.n.t.Fatalf("closure of %s is %v, want %v", name, got, g.closure(g.paths[name]))
			}
		}
	}
}

// name returns the node name of a store path.
func (g *crashGraph) name(path string) string {
	return strings.TrimPrefix(filepath.Base(path)[33:], "crash-"+g.seed+"-")
}

// closure returns the closure of a store path of the graph.
func (g *crashGraph) closure(path string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		for _, r := range g.refs[name] {
			walk(r)
		}
	}
	walk(g.name(path))
	var out []string
	for name := range seen {
		out = append(out, g.paths[name])
	}
	sort.Strings(out)
	return out
}

// roundTops returns the top path of each pusher in round r.
func (g *crashGraph) roundTops(r int) []string {
	tops := make([]string, crashPushers)
	for i := range tops {
		tops[i] = g.paths[fmt.Sprintf("r%d-t%d", r, i)]
	}
	return tops
}

// roundPaths returns the store paths built for round r.
func (g *crashGraph) roundPaths(r int) []string {
	var out []string
	for _, name := range g.rounds[r] {
		out = append(out, g.paths[name])
	}
	return out
}

// roundBytes is the size of the paths of round r and base.
func (g *crashGraph) roundBytes(r int) int {
	n := g.sizes["base"]
	for _, name := range g.rounds[r] {
		n += g.sizes[name]
	}
	return n
}

// allPaths returns every path built.
func (g *crashGraph) allPaths() []string {
	var out []string
	for _, p := range g.paths {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// deleteLocal deletes the built paths from the local store, so that many
// rounds do not fill it; nothing outside the test refers to them.
func (g *crashGraph) deleteLocal() {
	if paths := g.allPaths(); len(paths) > 0 {
		_, _, _ = g.n.try(append([]string{"nix-store", "--delete"}, paths...)...)
	}
}

// crashVerifier checks what a restarted server serves of the graph.
type crashVerifier struct {
	t      *testing.T
	srv    *server
	key    string
	g      *crashGraph
	seen   map[string]string // store path -> its narinfo, once served
	seenIn map[string]int    // store path -> the round it was first served in
	// lastByte is the last byte of the NAR file of each path in seen.
	lastByte map[string]byte
	client   *http.Client
}

func newCrashVerifier(t *testing.T, srv *server, key string, g *crashGraph) *crashVerifier {
	return &crashVerifier{t: t, srv: srv, key: key, g: g, seen: map[string]string{}, seenIn: map[string]int{}, lastByte: map[string]byte{},
		client: &http.Client{Timeout: 30 * time.Second}}
}

// roundStats is what checkRound found.
type roundStats struct {
	checked, served, fresh, stable int
}

// get sends a request with the admin token and the given header fields
// (name, value, ...) and returns the status, the body, its sha256 in nix32
// and the response header, or a transport error.
func (v *crashVerifier) get(method, url string, header ...string) (int, string, string, http.Header, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, "", "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+v.srv.AdminToken)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, "", "", nil, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	var body strings.Builder
	if _, err := io.Copy(io.MultiWriter(h, &body), resp.Body); err != nil {
		return 0, "", "", nil, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, body.String(), nixbase32.EncodeToString(h.Sum(nil)), resp.Header, nil
}

// checkRound checks, after the restart that followed round r, the narinfos
// the server serves: of the paths of rounds r-1 and r and of base (which
// round r pushed, or retried), and of every path served after an earlier
// round. killedLog is the output of the server killed in round r.
func (v *crashVerifier) checkRound(r int, killedLog string) roundStats {
	t := v.t
	t.Helper()
	var st roundStats
	url := v.srv.cacheURL("main")
	report := func(format string, args ...any) {
		t.Helper()
		t.Errorf("round %d: "+format+"\nkilled server's log:\n%s\nrestarted server's log:\n%s",
			append(append([]any{r}, args...), tail(killedLog, 25), tail(v.srv.log.String(), 15))...)
	}
	check := map[string]bool{v.g.paths["base"]: true}
	for _, p := range append(v.g.roundPaths(r), v.g.roundPaths(r-1)...) {
		check[p] = true
	}
	for p := range v.seen {
		check[p] = true
	}
	var fresh []string
	bodies, lasts := map[string]string{}, map[string]byte{}
	for _, p := range sortedSet(check) {
		st.checked++
		code, body, _, _, err := v.get("GET", url+"/"+hashPart(p)+".narinfo")
		if err != nil {
			report("GET narinfo of %s: %v", p, err)
			continue
		}
		old, wasServed := v.seen[p]
		if code == 404 {
			if wasServed {
				report("the narinfo of %s, served since round %d, is gone (404)", p, v.seenIn[p])
			}
			continue
		}
		if code != 200 {
			report("GET narinfo of %s: %d %s", p, code, body)
			continue
		}
		st.served++
		if wasServed {
			if body != old && !chunkedSince(old, body) {
				report("the narinfo of %s changed:\nbefore:\n%s\nnow:\n%s", p, old, body)
				continue
			}
			if body != old {
				// Its NAR was chunked since: the path is the same, the
				// file new, and checked as a new one is.
				problem, last := v.checkNarInfo(p, body)
				if problem != "" {
					report("%s\nnarinfo served:\n%s", problem, body)
					continue
				}
				v.seen[p], v.lastByte[p] = body, last
				st.stable++
				continue
			}
			// An unchanged narinfo names a NAR file checked whole when
			// it was first served: see that it is still there, to its
			// last byte. (HEAD would not do: the server answers it from
			// its records, without opening the file.)
			f := narInfoFields(body)
			size, _ := strconv.Atoi(firstValue(f["FileSize"]))
			rg := fmt.Sprintf("bytes=%d-%d", size-1, size-1)
			code, last, _, _, err := v.get("GET", url+"/"+firstValue(f["URL"]), "Range", rg)
			if err != nil || code != 206 || last != string([]byte{v.lastByte[p]}) {
				report("the NAR file of %s (narinfo served since round %d) is not whole: GET %s with Range %s: %d %q %v, want 206 %q",
					p, v.seenIn[p], firstValue(f["URL"]), rg, code, last, err, string([]byte{v.lastByte[p]}))
				continue
			}
			st.stable++
			continue
		}
		problem, last := v.checkNarInfo(p, body)
		if problem != "" {
			report("%s\nnarinfo served:\n%s", problem, body)
			continue
		}
		fresh = append(fresh, p)
		bodies[p] = body
		lasts[p] = last
	}
	if len(fresh) > 0 {
		if err := v.substituteAll(fresh); err != "" {
			report("%s", err)
			return st
		}
	}
	for _, p := range fresh {
		v.seen[p] = bodies[p]
		v.lastByte[p] = lasts[p]
		v.seenIn[p] = r
	}
	st.fresh = len(fresh)
	return st
}

// chunkedSince reports whether narinfo now differs from before only as
// chunking its NAR file changes it: the same path, NAR and signatures, now
// served as the zstd file of its chunks.
func chunkedSince(before, now string) bool {
	b, n := narInfoFields(before), narInfoFields(now)
	for _, k := range []string{"StorePath", "NarHash", "NarSize", "References", "Deriver", "Sig", "CA"} {
		if !slices.Equal(b[k], n[k]) {
			return false
		}
	}
	return firstValue(n["Compression"]) == "zstd" && strings.HasSuffix(firstValue(n["URL"]), ".nar.zst") &&
		firstValue(b["URL"]) != firstValue(n["URL"])
}

// checkNarInfo checks a served narinfo of store path p against p and the
// NAR file it names, fetched whole, and returns what is wrong, if anything.
func (v *crashVerifier) checkNarInfo(p, body string) (string, byte) {
	f := narInfoFields(body)
	if got := firstValue(f["StorePath"]); got != p {
		return fmt.Sprintf("the narinfo of %s has StorePath %q", p, got), 0
	}
	if len(f["Sig"]) == 0 {
		return fmt.Sprintf("the narinfo of %s is not signed", p), 0
	}
	narURL := firstValue(f["URL"])
	code, nar, sum, _, err := v.get("GET", v.srv.cacheURL("main")+"/"+narURL)
	switch {
	case err != nil:
		return fmt.Sprintf("GET %s, the NAR file of %s: %v", narURL, p, err), 0
	case code != 200:
		return fmt.Sprintf("the narinfo of %s is served but its NAR file %s is not: %d %s", p, narURL, code, strings.TrimSpace(nar)), 0
	case len(nar) == 0 || strconv.Itoa(len(nar)) != firstValue(f["FileSize"]):
		return fmt.Sprintf("the NAR file %s of %s has %d bytes, the narinfo says FileSize %s", narURL, p, len(nar), firstValue(f["FileSize"])), 0
	case "sha256:"+sum != firstValue(f["FileHash"]):
		return fmt.Sprintf("the NAR file %s of %s has sha256:%s, the narinfo says FileHash %s", narURL, p, sum, firstValue(f["FileHash"])), 0
	case firstValue(f["NarHash"]) != v.g.hashes[p]:
		return fmt.Sprintf("the narinfo of %s has NarHash %s, the local store %s", p, firstValue(f["NarHash"]), v.g.hashes[p]), 0
	}
	return "", nar[len(nar)-1]
}

// substituteAll substitutes roots from the cache into a new, empty chroot
// store with the cache as the only substituter and its key as the only
// trusted one, checks that the store then holds exactly their closures
// with the NAR hashes of the local store, verified against the files, and
// removes the store. It returns what went wrong, if anything.
func (v *crashVerifier) substituteAll(roots []string) string {
	n := needNix(v.t)
	chroot, err := os.MkdirTemp("", "larder-crashloop-store-")
	must(v.t, err)
	defer removeChroot(chroot)
	want := map[string]bool{}
	for _, p := range roots {
		for _, q := range v.g.closure(p) {
			want[q] = true
		}
	}
	run := func(args ...string) (string, error) {
		out, errOut, err := n.try(args...)
		if err != nil {
			return "", fmt.Errorf("%s: %v\n%s%s", strings.Join(args, " "), err, out, tail(errOut, 20))
		}
		return out, nil
	}
	if _, err := run(append([]string{"nix-store", "--store", chroot, "-r",
		"--option", "substituters", v.srv.cacheURL("main"), "--option", "trusted-public-keys", v.key}, roots...)...); err != nil {
		return fmt.Sprintf("substituting %d served paths into an empty store failed: %v", len(roots), err)
	}
	out, err := run(append([]string{"nix-store", "--store", chroot, "--query", "--requisites"}, roots...)...)
	if err != nil {
		return err.Error()
	}
	if got := lines(out); !sameSet(got, sortedSet(want)) {
		return fmt.Sprintf("substituting %v brought %v, want their closure %v", roots, got, sortedSet(want))
	}
	paths := sortedSet(want)
	out, err = run(append([]string{"nix-store", "--store", chroot, "--query", "--hash"}, paths...)...)
	if err != nil {
		return err.Error()
	}
	got := lines(out)
	if len(got) != len(paths) {
		return fmt.Sprintf("nix-store --query --hash gave %d lines for %d paths", len(got), len(paths))
	}
	for i, p := range paths {
		if got[i] != v.g.hashes[p] {
			return fmt.Sprintf("substituted %s has NAR hash %s, the original %s", p, got[i], v.g.hashes[p])
		}
	}
	if _, err := run(append([]string{"nix", "store", "verify", "--store", chroot, "--no-trust", "-r"}, roots...)...); err != nil {
		return err.Error()
	}
	return ""
}

// removeChroot removes a chroot store, making its read-only directories
// writable first.
func removeChroot(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func firstValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// reclaimedRE matches the line a starting server logs when it removed
// temporary files of uploads a crash interrupted.
var reclaimedRE = regexp.MustCompile(`reclaimed leftovers of interrupted uploads"? count=(\d+)`)
