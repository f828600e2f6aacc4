package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

func TestHistoryCountsLookups(t *testing.T) {
	e := newGCEnv(t, store.Policy{})
	e.push("hello")
	for _, found := range []bool{true, true, true, false, false} {
		e.svc.CountLookup("main", found)
	}
	e.svc.CountLookup("no-such-cache", true) // counts nowhere
	at := time.Now().Truncate(time.Minute)
	service.SampleHistory(e.svc, t.Context(), at)
	e.svc.CountLookup("main", true)
	service.SampleHistory(e.svc, t.Context(), at) // adds into the same interval
	h, err := e.svc.History(t.Context(), e.cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].Requests != 6 || h[0].Hits != 4 || h[0].Paths != 1 || h[0].Bytes <= 0 ||
		h[0].Span != service.DefaultHistoryInterval || !h[0].At.Equal(at) {
		t.Fatalf("history: %+v", h)
	}
	o, err := e.svc.Overview(t.Context(), e.cache)
	if err != nil {
		t.Fatal(err)
	}
	if o.Paths != 1 || o.Requests != 6 || o.Hits != 4 {
		t.Fatalf("overview: %+v", o)
	}
	service.SampleHistory(e.svc, t.Context(), at.Add(time.Minute)) // nothing counted since
	h, _ = e.svc.History(t.Context(), e.cache)
	if len(h) != 2 || h[1].Requests != 0 || h[1].Paths != 1 {
		t.Fatalf("history after an interval without lookups: %+v", h)
	}
	// Old samples are merged, and very old ones go.
	if err := e.svc.CompactHistory(t.Context(), at.Add(400*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if h, _ = e.svc.History(t.Context(), e.cache); len(h) != 0 {
		t.Fatalf("history a year later: %+v", h)
	}
}

func TestSessions(t *testing.T) {
	e := newGCEnv(t, store.Policy{})
	ctx := t.Context()
	tok, rec, err := e.svc.CreateToken(ctx, service.TokenSpec{Cache: "main", Perm: store.PermRead})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "lrd_not-a-token"} {
		if _, _, err := e.svc.Login(ctx, bad); service.CodeOf(err) != service.CodeUnauthenticated {
			t.Errorf("login with %q: %v, want CodeUnauthenticated", bad, err)
		}
	}
	secret, sess, err := e.svc.Login(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(secret, tok) || sess.CSRF == "" || time.Until(sess.ExpiresAt) > service.SessionTTL {
		t.Fatalf("login: secret %q, session %+v", secret, sess)
	}
	got, err := e.svc.SessionOf(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Principal.Can("main", store.PermRead) || got.Principal.Can("main", store.PermWrite) || got.CSRF != sess.CSRF {
		t.Fatalf("session: %+v", got)
	}
	for _, bad := range []string{"", tok, secret + "x", strings.ToUpper(secret), "lrs_" + strings.Repeat("a", 52)} {
		if _, err := e.svc.SessionOf(ctx, bad); service.CodeOf(err) != service.CodeUnauthenticated {
			t.Errorf("session of %q: %v, want CodeUnauthenticated", bad, err)
		}
	}
	other, _, err := e.svc.Login(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SessionOf(ctx, other); service.CodeOf(err) != service.CodeUnauthenticated {
		t.Errorf("session after logout: %v", err)
	}
	if _, err := e.svc.SessionOf(ctx, secret); err != nil {
		t.Errorf("the other session after logout: %v", err)
	}
	if err := e.svc.RevokeToken(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SessionOf(ctx, secret); service.CodeOf(err) != service.CodeUnauthenticated {
		t.Errorf("session of a revoked token: %v", err)
	}

	short, _, err := e.svc.CreateToken(ctx, service.TokenSpec{Cache: "main", Perm: store.PermRead, ExpiresIn: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, sess, err := e.svc.Login(ctx, short); err != nil || time.Until(sess.ExpiresAt) > time.Hour {
		t.Errorf("session of a token that expires in an hour: %+v, %v", sess, err)
	}
}

func TestFindPaths(t *testing.T) {
	e := newGCEnv(t, store.Policy{})
	hello := e.push("hello-2.12")
	e.push("help")
	ctx := t.Context()
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"hel", []string{"hello-2.12", "help"}},
		{"  HELLO ", []string{"hello-2.12"}},
		{"/nix/store/" + hello, []string{"hello-2.12"}},
		{hello[:32] + "-wrong-name", []string{"hello-2.12"}},
		{hello[:10], []string{"hello-2.12"}},
		{"%", nil},
		{"' OR 1=1 --", nil},
	} {
		l, err := e.svc.FindPaths(ctx, e.cache, tc.q)
		if err != nil {
			t.Fatalf("find %q: %v", tc.q, err)
		}
		var names []string
		for _, ni := range l {
			names = append(names, ni.StorePath[len("/nix/store/")+33:])
		}
		if strings.Join(names, " ") != strings.Join(tc.want, " ") {
			t.Errorf("find %q: %q, want %q", tc.q, names, tc.want)
		}
	}
	for _, bad := range []string{"", "   ", strings.Repeat("a", service.MaxQuery+1), "a\x00b", "a\nb", "\x1b[31m"} {
		if _, err := e.svc.FindPaths(ctx, e.cache, bad); service.CodeOf(err) != service.CodeInvalid {
			t.Errorf("find %q: %v, want CodeInvalid", bad, err)
		}
	}
}

func TestPathDetails(t *testing.T) {
	e := newGCEnv(t, store.Policy{})
	lib := e.push("lib")
	app := e.push("app", lib, "00000000000000000000000000000000-upstream")
	ctx := t.Context()
	d, err := e.svc.Path(ctx, e.cache, app[:32])
	if err != nil {
		t.Fatal(err)
	}
	if len(d.References) != 2 || d.References[0].InCache || !d.References[1].InCache || d.References[1].Name != lib {
		t.Errorf("references: %+v", d.References)
	}
	if d.Closure.Paths != 2 || d.Listing != nil || !d.LastRead.IsZero() {
		t.Errorf("details: closure %+v, listing %+v, last read %v", d.Closure, d.Listing, d.LastRead)
	}
	fields := map[string]string{}
	for _, f := range d.Fields {
		fields[f[0]] += f[1]
	}
	if fields["StorePath"] != "/nix/store/"+app || !strings.HasPrefix(fields["Sig"], "main.") {
		t.Errorf("fields: %q", d.Fields)
	}
	d, err = e.svc.Path(ctx, e.cache, lib[:32])
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Referrers) != 1 || d.Referrers[0].StorePath != "/nix/store/"+app {
		t.Errorf("referrers of lib: %+v", d.Referrers)
	}
	for _, bad := range []string{"x", strings.Repeat("e", 32), "../../etc/passwd"} {
		if _, err := e.svc.Path(ctx, e.cache, bad); service.CodeOf(err) != service.CodeInvalid {
			t.Errorf("path %q: %v, want CodeInvalid", bad, err)
		}
	}
	if _, err := e.svc.Path(ctx, e.cache, strings.Repeat("0", 32)); service.CodeOf(err) != service.CodeNotFound {
		t.Errorf("path not in the cache: %v, want CodeNotFound", err)
	}
}

func TestPlanCollection(t *testing.T) {
	e := newGCEnv(t, store.Policy{Retention: time.Second})
	ctx := t.Context()
	small := e.push("small")
	big := e.push("big-but-much-bigger", small)
	pinned := e.push("pinned")
	if _, err := e.svc.Pin(ctx, e.cache, service.PinSpec{StorePath: "/nix/store/" + pinned, Name: "release"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * tick)
	plan, err := e.svc.PlanCollection(ctx, e.cache)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Report.Result.RemovedPaths != 2 || len(plan.Biggest) != 2 ||
		plan.Biggest[0].NarInfo.StorePath != "/nix/store/"+big || plan.Biggest[0].Closure.Paths != 2 {
		t.Fatalf("plan: %+v", plan)
	}
	if len(plan.Pins) != 1 || !plan.Pins[0].Kept || plan.Pins[0].Closure.Paths != 1 || plan.Pins[0].Pin.Name != "release" {
		t.Fatalf("planned pins: %+v", plan.Pins)
	}
	if !e.has(small) || !e.has(big) {
		t.Fatal("a planned collection removed paths")
	}
}
