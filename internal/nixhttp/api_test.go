package nixhttp_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// pinsOf returns the store paths the cache's pins keep, as the API lists
// them.
func (e *env) pinsOf(cache string) []string {
	e.t.Helper()
	_, body := e.expect(200, "GET", "/_larder/api/caches/"+cache+"/pins", e.admin, nil)
	var pins []struct {
		StorePath string `json:"storePath"`
	}
	if err := json.Unmarshal([]byte(body), &pins); err != nil {
		e.t.Fatalf("pins of %s: %v: %s", cache, err, body)
	}
	var out []string
	for _, p := range pins {
		out = append(out, p.StorePath)
	}
	return out
}

// TestPinAPIRefuses sends the pins API malformed, oversized and hostile
// requests, and requests without the right to pin: each gets its 4xx with
// a message saying what was wrong, and no pin is made.
func TestPinAPIRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, spec := range []service.CacheSpec{{Name: "other"}, {Name: "secret", Private: true}} {
		if _, err := e.app.Service.CreateCache(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	p := newPath(t, "pinned", []byte("pinned"), "zstd")
	e.push("main", p)
	write := e.token("main", store.PermWrite, 0)
	read := e.token("main", store.PermRead, 0)
	otherWrite := e.token("other", store.PermWrite, 0)
	good := `{"storePath": "` + p.StorePath + `", "keepRevisions": 2}`
	url := "/_larder/api/caches/main/pins/release"
	cases := []struct {
		name, method, path, token, body string
		want                            int
		says                            string
	}{
		{"no credentials", "PUT", url, "", good, 401, ""},
		{"wrong token", "PUT", url, "not-a-token", good, 401, ""},
		{"read token", "PUT", url, read, good, 403, ""},
		{"another cache's token", "PUT", url, otherWrite, good, 403, ""},
		{"no such cache", "PUT", "/_larder/api/caches/nope/pins/release", e.admin, good, 404, "nope"},
		{"not JSON", "PUT", url, write, "storePath=" + p.StorePath, 400, "not a pin"},
		{"truncated JSON", "PUT", url, write, good[:20], 400, "not a pin"},
		{"unknown field", "PUT", url, write, `{"storePath": "` + p.StorePath + `", "keep": 2}`, 400, "unknown field"},
		{"wrong type", "PUT", url, write, `{"storePath": 42}`, 400, "not a pin"},
		{"oversized body", "PUT", url, write, `{"storePath": "` + strings.Repeat("a", 100<<10) + `"}`, 400, "not a pin"},
		{"not a store path", "PUT", url, write, `{"storePath": "/etc/passwd"}`, 400, "not a store path"},
		{"traversal in the store path", "PUT", url, write, `{"storePath": "/nix/store/../../etc/passwd"}`, 400, "not a store path"},
		{"negative revisions", "PUT", url, write, `{"storePath": "` + p.StorePath + `", "keepRevisions": -1}`, 400, "negative"},
		{"revisions and days", "PUT", url, write, `{"storePath": "` + p.StorePath + `", "keepRevisions": 2, "keepDays": 3}`, 400, "exclude each other"},
		{"negative days", "PUT", url, write, `{"storePath": "` + p.StorePath + `", "keepDays": -3}`, 400, "negative"},
		{"path not in the cache", "PUT", url, write, `{"storePath": "/nix/store/` + strings.Repeat("1", 32) + `-absent"}`, 404, "push it first"},
		{"bad pin name", "PUT", "/_larder/api/caches/main/pins/bad%20name", write, good, 400, "pin name"},
		{"dot pin name", "PUT", "/_larder/api/caches/main/pins/..", write, good, 400, ""},
		{"wrong method", "PATCH", url, write, good, 405, ""},
		{"unpin what is not pinned", "DELETE", url, write, "", 404, "release"},
		{"unknown call", "GET", "/_larder/api/nothing", e.admin, "", 404, "no such API call"},
		{"pins of a private cache, another cache's token", "GET", "/_larder/api/caches/secret/pins", read, "", 403, ""},
		{"pins of a private cache, no credentials", "GET", "/_larder/api/caches/secret/pins", "", "", 401, ""},
		{"caches with a write token", "GET", "/_larder/api/caches", write, "", 200, "[]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			resp, got := e.do(c.method, c.path, c.token, body)
			if resp.StatusCode != c.want {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, resp.StatusCode, got, c.want)
			}
			if c.says != "" && !strings.Contains(got, c.says) {
				t.Errorf("%s %s answered %q, which does not mention %q", c.method, c.path, strings.TrimSpace(got), c.says)
			}
		})
	}
	if pins := e.pinsOf("main"); len(pins) != 0 {
		t.Fatalf("refused requests made pins: %v", pins)
	}
	e.expect(201, "PUT", url, write, []byte(good))
	if pins := e.pinsOf("main"); len(pins) != 1 || pins[0] != p.StorePath {
		t.Fatalf("after a good pin: %v", pins)
	}
	e.expect(204, "DELETE", url, write, nil)
	if pins := e.pinsOf("main"); len(pins) != 0 {
		t.Fatalf("after unpinning: %v", pins)
	}
}
