package nixhttp_test

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/service"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

func missingBody(hashes []string) []byte {
	b, _ := json.Marshal(map[string][]string{"hashes": hashes})
	return b
}

// TestMissingAPI: one request answers, for 50,000 store path hashes, which
// the cache lacks; malformed questions are refused with 4xx and a message
// saying what is wrong.
func TestMissingAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var held []*path
	for i := range 3 {
		p := newPath(t, fmt.Sprint("held", i), []byte(fmt.Sprint("held ", i)), "zstd")
		e.push("main", p)
		held = append(held, p)
	}
	hashes := make([]string, 0, 50_000)
	digest := make([]byte, 20)
	for range 50_000 - len(held) {
		_, _ = rand.Read(digest)
		hashes = append(hashes, nixbase32.EncodeToString(digest))
	}
	want := map[string]bool{}
	for _, h := range hashes {
		want[h] = true
	}
	for _, p := range held {
		hashes = append(hashes, p.Hash)
	}
	from := e.logs.String()
	resp, body := e.expect(http.StatusOK, "POST", "/_larder/api/caches/main/missing", e.admin, missingBody(hashes))
	var ans struct {
		Missing []string `json:"missing"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatalf("answer %q: %v", body[:min(len(body), 200)], err)
	}
	got := map[string]bool{}
	for _, h := range ans.Missing {
		got[h] = true
	}
	if len(got) != len(want) || len(ans.Missing) != len(want) {
		t.Fatalf("%d missing (%d distinct), want %d", len(ans.Missing), len(got), len(want))
	}
	for _, p := range held {
		if got[p.Hash] {
			t.Errorf("%s is held but answered missing", p.Hash)
		}
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	if n := strings.Count(e.logs.String()[len(from):], "kind=api"); n != 1 {
		t.Errorf("%d API requests logged, want 1", n)
	}

	tooMany := make([]string, service.MaxMissingQuery+1)
	for i := range tooMany {
		tooMany[i] = held[0].Hash
	}
	before := e.snapshot()
	for _, c := range []struct {
		name   string
		method string
		body   []byte
		status int
		msg    string
	}{
		{"not JSON", "POST", []byte("hashes=1"), 400, "is not"},
		{"unknown field", "POST", []byte(`{"hashes": [], "paths": []}`), 400, "unknown field"},
		{"two values", "POST", []byte(`{"hashes": []}{"hashes": []}`), 400, "after the JSON value"},
		{"a hash too short", "POST", missingBody([]string{"abc"}), 400, "not the hash of a store path"},
		{"a hash with a slash", "POST", missingBody([]string{strings.Repeat("a", 31) + "/"}), 400, "not the hash of a store path"},
		{"an upper-case hash", "POST", missingBody([]string{strings.ToUpper(held[0].Hash)}), 400, "not the hash of a store path"},
		{"too many hashes", "POST", missingBody(tooMany), 413, "more than the 100000"},
		{"a body past the limit", "POST", bytes.Repeat([]byte(" "), 5<<20), 413, "more than the limit"},
		{"GET", "GET", nil, 405, "GET is not supported"},
	} {
		resp, msg := e.do(c.method, "/_larder/api/caches/main/missing", e.admin, c.body)
		if resp.StatusCode != c.status || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %q, want %d saying %q", c.name, resp.StatusCode, msg, c.status, c.msg)
		}
	}
	e.mustUnchanged(before)
	// An empty question has an empty answer.
	if _, body := e.expect(http.StatusOK, "POST", "/_larder/api/caches/main/missing", e.admin, []byte(`{"hashes": []}`)); strings.TrimSpace(body) != `{"missing":[]}` {
		t.Errorf("answer to no hashes: %s", body)
	}
}

// TestUploadAPI: a NAR file sent in parts through the API is verified and
// served like one sent whole; malformed calls are refused with 4xx, and a
// file that does not match its name is refused at completion, storing
// nothing.
func TestUploadAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := make([]byte, 11<<20)
	_, _ = rand.Read(big) // incompressible: three parts of 5 MiB or less
	p := newPath(t, "parts", big, "zstd")
	create := func(key string) string {
		t.Helper()
		_, body := e.expect(http.StatusCreated, "POST", "/_larder/api/caches/main/uploads", e.admin, []byte(`{"key": "`+key+`"}`))
		var ans struct {
			UploadID string `json:"uploadId"`
		}
		if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.UploadID == "" {
			t.Fatalf("create upload: %s %v", body, err)
		}
		return ans.UploadID
	}
	send := func(id string, data []byte) string {
		t.Helper()
		var parts []string
		for i := 0; len(data) > 0; i++ {
			n := min(len(data), 5<<20)
			_, body := e.expect(http.StatusOK, "PUT", fmt.Sprintf("/_larder/api/caches/main/uploads/%s/parts/%d", id, i+1), e.admin, data[:n])
			sum := md5.Sum(data[:n])
			if !strings.Contains(body, hex.EncodeToString(sum[:])) {
				t.Fatalf("part %d answered %s, without its MD5", i+1, body)
			}
			parts = append(parts, fmt.Sprintf(`{"number": %d, "etag": "%s"}`, i+1, hex.EncodeToString(sum[:])))
			data = data[n:]
		}
		return `{"parts": [` + strings.Join(parts, ", ") + `]}`
	}
	if len(p.File) < 10<<20 {
		t.Fatalf("the compressed NAR has %d bytes: too few for three parts", len(p.File))
	}
	// A file that is not what its name says: refused at completion.
	wrong := create("nar/" + nix32sha([]byte("other")) + ".nar.zst")
	done := send(wrong, p.File)
	if resp, msg := e.do("POST", "/_larder/api/caches/main/uploads/"+wrong+"/complete", e.admin, []byte(done)); resp.StatusCode != 400 || !strings.Contains(msg, "hash") {
		t.Errorf("completing an upload whose bytes are not its name's: %d %q", resp.StatusCode, msg)
	}
	id := create(p.URL())
	complete := send(id, p.File)
	var listed struct {
		Parts []json.RawMessage `json:"parts"`
	}
	if err := json.Unmarshal([]byte(complete), &listed); err != nil || len(listed.Parts) != 3 {
		t.Fatalf("parts %s: %v", complete, err)
	}
	reversed := fmt.Sprintf(`{"parts": [%s, %s]}`, listed.Parts[1], listed.Parts[0])
	before := e.snapshot()
	for _, c := range []struct {
		name, method, path string
		body               []byte
		status             int
		msg                string
	}{
		{"create for a narinfo", "POST", "/_larder/api/caches/main/uploads", []byte(`{"key": "` + p.Hash + `.narinfo"}`), 400, "only NAR files"},
		{"create with traversal", "POST", "/_larder/api/caches/main/uploads", []byte(`{"key": "nar/../x"}`), 400, "not the key of a NAR file"},
		{"create not JSON", "POST", "/_larder/api/caches/main/uploads", []byte(`key=x`), 400, "is not"},
		{"part 0", "PUT", "/_larder/api/caches/main/uploads/" + id + "/parts/0", []byte("x"), 400, "not between 1 and 10000"},
		{"part 10001", "PUT", "/_larder/api/caches/main/uploads/" + id + "/parts/10001", []byte("x"), 400, "not between 1 and 10000"},
		{"part not a number", "PUT", "/_larder/api/caches/main/uploads/" + id + "/parts/1e3", []byte("x"), 400, "not a number"},
		{"part with a sign", "PUT", "/_larder/api/caches/main/uploads/" + id + "/parts/+1", []byte("x"), 400, "not a number"},
		{"part of an unknown upload", "PUT", "/_larder/api/caches/main/uploads/nope/parts/1", []byte("x"), 404, "no upload"},
		{"complete with a wrong ETag", "POST", "/_larder/api/caches/main/uploads/" + id + "/complete", []byte(`{"parts": [{"number": 1, "etag": "00"}]}`), 400, "ETag"},
		{"complete out of order", "POST", "/_larder/api/caches/main/uploads/" + id + "/complete", []byte(reversed), 400, "ascending"},
		{"complete with no parts", "POST", "/_larder/api/caches/main/uploads/" + id + "/complete", []byte(`{"parts": []}`), 400, "no parts"},
		{"complete with another key", "POST", "/_larder/api/caches/main/uploads/" + id + "/complete", []byte(`{"key": "nar/x.nar", "parts": []}`), 400, "is of"},
		{"complete an unknown upload", "POST", "/_larder/api/caches/main/uploads/nope/complete", []byte(complete), 404, "no upload"},
		{"an unknown call", "GET", "/_larder/api/caches/main/uploads/" + id, nil, 404, "no such API call"},
		{"the upload through another cache", "POST", "/_larder/api/caches/other/uploads/" + id + "/complete", []byte(complete), 404, ""},
	} {
		resp, msg := e.do(c.method, c.path, e.admin, c.body)
		if resp.StatusCode != c.status || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %q, want %d saying %q", c.name, resp.StatusCode, msg, c.status, c.msg)
		}
	}
	e.mustUnchanged(before)
	e.expect(http.StatusCreated, "POST", "/_larder/api/caches/main/uploads/"+id+"/complete", e.admin, []byte(complete))
	e.expect(http.StatusCreated, "PUT", "/main/"+p.Hash+".narinfo", e.admin, []byte(p.NarInfo()))
	if _, body := e.expect(http.StatusOK, "GET", "/main/"+p.URL(), "", nil); body != string(p.File) {
		t.Errorf("the NAR file sent in parts is served with %d bytes, want %d", len(body), len(p.File))
	}
	// An abandoned upload can be aborted, and is gone then.
	other := create(p.URL())
	e.expect(http.StatusNoContent, "DELETE", "/_larder/api/caches/main/uploads/"+other, e.admin, nil)
	e.expect(http.StatusNotFound, "PUT", "/_larder/api/caches/main/uploads/"+other+"/parts/1", e.admin, []byte("x"))
}
