package s3api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// The credentials of the S3 auth matrix. Each is wrong in one way only: the
// wrong secret, expired and revoked keys are admin keys of the bucket
// addressed, the other cache's key is an admin key of another cache. none
// is an unsigned request, as an anonymous S3 client sends it: larder takes
// every unsigned request for the Nix protocol, which refuses it too.
var s3MatrixCredentials = []string{"none", "wrong-secret", "unknown-key", "expired", "revoked", "read-only", "other-cache"}

// s3MatrixCreds makes the credentials of the matrix for a scope.
func s3MatrixCreds(t *testing.T, e *env, scope string) map[string]cred {
	t.Helper()
	ctx := t.Context()
	key := func(perm store.Perm, expires time.Duration) (cred, int64) {
		text, tok, err := e.app.Service.CreateToken(ctx, service.TokenSpec{Cache: scope, Perm: perm, ExpiresIn: expires, S3: true})
		if err != nil {
			t.Fatal(err)
		}
		id, secret, _ := strings.Cut(text, " ")
		return cred{id: id, secret: secret}, tok.ID
	}
	admin, _ := key(store.PermAdmin, 0)
	revoked, id := key(store.PermAdmin, 0)
	if err := e.app.Service.RevokeToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Expired the moment it is made: the expiry is rounded down to the
	// second.
	expired, _ := key(store.PermAdmin, time.Nanosecond)
	readOnly, _ := key(store.PermRead, 0)
	return map[string]cred{
		"wrong-secret": {id: admin.id, secret: "wrong" + admin.secret},
		"unknown-key":  {id: "LRDUNKNOWNKEY00000", secret: admin.secret},
		"expired":      expired,
		"revoked":      revoked,
		"read-only":    readOnly,
		"other-cache":  e.key("other", store.PermAdmin),
	}
}

// s3MatrixEndpoint is a row of the matrix.
type s3MatrixEndpoint struct {
	name   string
	q      raw
	scope  string // whose credentials are used
	need   store.Perm
	anon   int    // the Nix protocol's answer to the request unsigned
	anonIs string // part of that answer
	ok     int    // the answer to a credential that may: read-only for reads, admin for the rest
}

// TestS3AuthMatrix sends every S3 operation that writes, or reads a private
// cache or an upload in progress, with every kind of bad credential: each is
// refused (InvalidAccessKeyId, SignatureDoesNotMatch or AccessDenied; the
// unsigned request by the Nix protocol) and nothing changes. Finally each
// is sent with a credential that may, so that every row is known to be an
// operation that works.
func TestS3AuthMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, name := range []string{"secret", "other", "doomed"} {
		e.createCache(name, name == "secret")
	}
	put := func(bucket, key string, body []byte) {
		t.Helper()
		resp, b := e.do(e.admin, raw{method: "PUT", target: "/" + bucket + "/" + key, body: body})
		expectStatus(t, resp, b, http.StatusOK)
	}
	put("main", "matrix/existing", []byte("existing"))
	put("main", "matrix/other", []byte("other"))
	put("secret", "matrix/private", []byte("private"))
	stored := newStorePath(t, "stored", []byte("stored"), "xz")
	for _, bucket := range []string{"main", "secret"} {
		put(bucket, stored.narKey(), stored.file)
		put(bucket, stored.narinfoKey(), []byte(stored.narinfo()))
	}
	fresh := newStorePath(t, "fresh", []byte("fresh"), "xz")
	u1, etag := e.createUpload(e.admin, "main", "matrix/mp", []byte("part one"))
	u2, _ := e.createUpload(e.admin, "main", "matrix/mp2", []byte("part one"))
	complete := []byte("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>" + etag + "</ETag></Part></CompleteMultipartUpload>")
	creds := map[string]map[string]cred{}
	for _, scope := range []string{"main", "secret", "new*", "doomed"} {
		creds[scope] = s3MatrixCreds(t, e, scope)
	}

	const notNix = "is not a binary cache file"
	const r, w, a = store.PermRead, store.PermWrite, store.PermAdmin
	endpoints := []s3MatrixEndpoint{
		// Writes, in an order in which the controls succeed.
		{"PutObject", raw{method: "PUT", target: "/main/matrix/new", body: []byte("new")}, "main", w, 400, notNix, 200},
		{"PutObject-nar", raw{method: "PUT", target: "/main/" + fresh.narKey(), body: fresh.file}, "main", w, 401, "a token is needed to write to cache main", 200},
		{"PutObject-narinfo", raw{method: "PUT", target: "/main/" + fresh.narinfoKey(), body: []byte(fresh.narinfo())}, "main", w, 401, "a token is needed to write to cache main", 200},
		{"CopyObject", raw{method: "PUT", target: "/main/matrix/copy", hdr: []string{"X-Amz-Copy-Source", "main/matrix/existing"}}, "main", w, 400, notNix, 200},
		{"PutObjectAcl", raw{method: "PUT", target: "/main/matrix/existing?acl", body: []byte("<AccessControlPolicy/>")}, "main", w, 400, notNix, 200},
		{"UploadPart", raw{method: "PUT", target: "/main/matrix/mp?partNumber=2&uploadId=" + u1, body: []byte("part two")}, "main", w, 400, notNix, 200},
		{"ListParts", raw{method: "GET", target: "/main/matrix/mp?uploadId=" + u1}, "main", w, 400, notNix, 200},
		{"ListMultipartUploads", raw{method: "GET", target: "/main?uploads"}, "main", w, 400, notNix, 200},
		{"CompleteMultipartUpload", raw{method: "POST", target: "/main/matrix/mp?uploadId=" + u1, body: complete}, "main", w, 400, notNix, 200},
		{"AbortMultipartUpload", raw{method: "DELETE", target: "/main/matrix/mp2?uploadId=" + u2}, "main", w, 400, notNix, 204},
		{"CreateMultipartUpload", raw{method: "POST", target: "/main/matrix/mp3?uploads"}, "main", w, 400, notNix, 200},
		{"DeleteObject", raw{method: "DELETE", target: "/main/matrix/existing"}, "main", w, 400, notNix, 204},
		{"DeleteObject-narinfo", raw{method: "DELETE", target: "/main/" + stored.narinfoKey()}, "main", w, 405, "DELETE is not supported", 204},
		{"DeleteObjects", raw{method: "POST", target: "/main?delete", body: []byte("<Delete><Object><Key>matrix/other</Key></Object></Delete>")}, "main", w, 400, notNix, 200},
		{"CreateBucket", raw{method: "PUT", target: "/newbucket"}, "new*", a, 400, notNix, 200},
		{"DeleteBucket", raw{method: "DELETE", target: "/doomed"}, "doomed", a, 400, notNix, 204},
		// Reads of the private cache.
		{"GetObject", raw{method: "GET", target: "/secret/matrix/private"}, "secret", r, 400, notNix, 200},
		{"HeadObject", raw{method: "HEAD", target: "/secret/matrix/private"}, "secret", r, 400, "", 200},
		{"GetObject-narinfo", raw{method: "GET", target: "/secret/" + stored.narinfoKey()}, "secret", r, 401, "a token is needed to read cache secret", 200},
		{"GetObject-nar", raw{method: "GET", target: "/secret/" + stored.narKey()}, "secret", r, 401, "a token is needed to read cache secret", 200},
		{"HeadObject-nar", raw{method: "HEAD", target: "/secret/" + stored.narKey()}, "secret", r, 401, "", 200},
		{"GetObject-missing", raw{method: "GET", target: "/secret/matrix/absent"}, "secret", r, 400, notNix, 404},
		{"ListObjectsV2", raw{method: "GET", target: "/secret?list-type=2"}, "secret", r, 400, notNix, 200},
		{"ListObjects", raw{method: "GET", target: "/secret"}, "secret", r, 400, notNix, 200},
		{"ListObjectVersions", raw{method: "GET", target: "/secret?versions"}, "secret", r, 400, notNix, 200},
		{"HeadBucket", raw{method: "HEAD", target: "/secret"}, "secret", r, 400, "", 200},
		{"GetBucketLocation", raw{method: "GET", target: "/secret?location"}, "secret", r, 400, notNix, 200},
		{"GetObjectAcl", raw{method: "GET", target: "/secret/matrix/private?acl"}, "secret", r, 400, notNix, 200},
	}
	cacheNames := func() []string {
		caches, err := e.app.Service.ListCaches(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range caches {
			names = append(names, c.Name)
		}
		return names
	}
	before, beforeCaches := e.snapshot(), cacheNames()
	cells := 0
	for _, ep := range endpoints {
		for _, credName := range s3MatrixCredentials {
			cells++
			t.Run(ep.name+"/"+credName, func(t *testing.T) {
				checkS3MatrixCell(t, e, ep, credName, creds[ep.scope])
				e.unchangedFor(t, before)
				if got := cacheNames(); !slices.Equal(got, beforeCaches) {
					t.Fatalf("the caches changed: %v, before %v", got, beforeCaches)
				}
			})
		}
	}
	if want := len(endpoints) * len(s3MatrixCredentials); cells != want || cells < 150 {
		t.Fatalf("the matrix has %d cells, want %d", cells, want)
	}

	// The controls: a credential that may gets the operation's answer.
	for _, ep := range endpoints {
		c := e.admin
		if ep.need == r {
			c = creds[ep.scope]["read-only"]
		}
		if resp, b := e.do(c, ep.q); resp.StatusCode != ep.ok {
			t.Errorf("control %s: %d %s, want %d", ep.name, resp.StatusCode, b, ep.ok)
		}
	}
	if got := cacheNames(); !slices.Contains(got, "newbucket") || slices.Contains(got, "doomed") {
		t.Errorf("after the controls the caches are %v", got)
	}
}

// checkS3MatrixCell sends an endpoint's request with a credential and
// checks the refusal.
func checkS3MatrixCell(t *testing.T, e *env, ep s3MatrixEndpoint, credName string, creds map[string]cred) {
	t.Helper()
	if credName == "none" {
		q := ep.q
		req, err := http.NewRequest(q.method, e.srv.URL+q.target, strings.NewReader(string(q.body)))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(q.hdr); i += 2 {
			req.Header.Set(q.hdr[i], q.hdr[i+1])
		}
		resp, b := e.send(nil, req)
		if resp.StatusCode != ep.anon || !strings.Contains(string(b), ep.anonIs) {
			t.Fatalf("unsigned: %d %q, want %d %q", resp.StatusCode, b, ep.anon, ep.anonIs)
		}
		if resp.Header.Get("x-amz-request-id") != "" {
			t.Error("an unsigned request was answered by the S3 API")
		}
		return
	}
	resp, b := e.do(creds[credName], ep.q)
	var status int
	var code, says string
	switch credName {
	case "wrong-secret":
		status, code = 403, "SignatureDoesNotMatch"
	case "unknown-key", "expired", "revoked":
		status, code = 403, "InvalidAccessKeyId"
	case "read-only":
		switch ep.need {
		case store.PermRead:
			// The credential that may: the control of the column.
			if resp.StatusCode != ep.ok {
				t.Fatalf("%d %s, want %d: a read key may read", resp.StatusCode, b, ep.ok)
			}
			return
		case store.PermWrite:
			status, code, says = 403, "AccessDenied", "the credential allows read, but writing to cache main needs write"
		default:
			status, code, says = 403, "AccessDenied", "needs an admin credential whose scope covers it"
		}
	case "other-cache":
		status, code, says = 403, "AccessDenied", "the credential is for cache other"
		if ep.need == store.PermAdmin {
			says = "needs an admin credential whose scope covers it"
		}
	}
	msg := expectError(t, resp, b, status, code)
	if ep.q.method != http.MethodHead && !strings.Contains(msg, says) {
		t.Errorf("message %q does not say %q", msg, says)
	}
}

// TestS3MissingLikePrivate sends every bucket and object operation to a
// private bucket, and the same request to a bucket that does not exist (a
// name of the same length), with every key that may not read either: the
// answers are the same (status, headers, error document but for the name
// and request ID), so that nobody can find out whether a private cache
// exists. Nothing changes. A key that may read the name is still told
// which it is: NoSuchBucket for the missing one, AccessDenied for what it
// may not do to the private one.
func TestS3MissingLikePrivate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const private, missing = "secret", "nosuch"
	e.createCache(private, true)
	e.createCache("other", false)
	resp, b := e.do(e.admin, raw{method: "PUT", target: "/" + private + "/obj", body: []byte("private")})
	expectStatus(t, resp, b, http.StatusOK)
	creds := s3MatrixCreds(t, e, private)
	delete(creds, "read-only") // it may read the private bucket
	creds["main-write"] = e.key("main", store.PermWrite)
	creds["glob-admin"] = e.key("ci-*", store.PermAdmin)
	ops := []raw{
		{method: "HEAD", target: "/CACHE"},
		{method: "GET", target: "/CACHE?location"},
		{method: "GET", target: "/CACHE"},
		{method: "GET", target: "/CACHE?list-type=2&prefix=o"},
		{method: "GET", target: "/CACHE?versions"},
		{method: "GET", target: "/CACHE?uploads"},
		{method: "GET", target: "/CACHE?object-lock"},
		{method: "GET", target: "/CACHE?versioning"},
		{method: "GET", target: "/CACHE?acl"},
		{method: "GET", target: "/CACHE/obj"},
		{method: "HEAD", target: "/CACHE/obj"},
		{method: "GET", target: "/CACHE/absent"},
		{method: "GET", target: "/CACHE/obj?acl"},
		{method: "GET", target: "/CACHE/obj?tagging"},
		{method: "PUT", target: "/CACHE/new", body: []byte("new")},
		{method: "PUT", target: "/CACHE/copy", hdr: []string{"X-Amz-Copy-Source", "main/src"}},
		{method: "PUT", target: "/main/copy", hdr: []string{"X-Amz-Copy-Source", "CACHE/obj"}},
		{method: "DELETE", target: "/CACHE/obj"},
		{method: "POST", target: "/CACHE?delete", body: []byte("<Delete><Object><Key>obj</Key></Object></Delete>")},
		{method: "POST", target: "/CACHE/mp?uploads"},
		{method: "DELETE", target: "/CACHE"},
		{method: "PUT", target: "/CACHE"},
	}
	resp, b = e.do(e.admin, raw{method: "PUT", target: "/main/src", body: []byte("source")})
	expectStatus(t, resp, b, http.StatusOK)
	before := e.snapshot()
	for _, op := range ops {
		for name, c := range creds {
			t.Run(op.method+op.target+"/"+name, func(t *testing.T) {
				send := func(cache string) (*http.Response, string) {
					q := op
					q.target = strings.Replace(q.target, "CACHE", cache, 1)
					q.hdr = slices.Clone(op.hdr)
					for i := range q.hdr {
						q.hdr[i] = strings.Replace(q.hdr[i], "CACHE", cache, 1)
					}
					resp, b := e.do(c, q)
					return resp, strings.ReplaceAll(string(b), resp.Header.Get("x-amz-request-id"), "ID")
				}
				pr, pb := send(private)
				mr, mb := send(missing)
				if pr.StatusCode != http.StatusForbidden {
					t.Fatalf("the private bucket answered %d %s, want 403", pr.StatusCode, pb)
				}
				if mr.StatusCode != pr.StatusCode || strings.ReplaceAll(mb, missing, private) != pb {
					t.Fatalf("told apart: private %d %s, missing %d %s", pr.StatusCode, pb, mr.StatusCode, mb)
				}
				for _, h := range []http.Header{pr.Header, mr.Header} {
					h.Del("Date")
					h.Del("X-Amz-Request-Id")
				}
				if fmt.Sprint(pr.Header) != fmt.Sprint(mr.Header) {
					t.Fatalf("headers told apart:\nprivate %v\nmissing %v", pr.Header, mr.Header)
				}
				e.unchangedFor(t, before)
			})
		}
	}

	// The log says which it was.
	for _, why := range []string{"not cache nosuch: there is no such cache", "not cache secret: the cache is private"} {
		if !strings.Contains(e.logs.String(), why) {
			t.Errorf("the log does not say %q", why)
		}
	}

	// A key that may read the name is told the truth.
	starRead := e.key(service.AllCaches, store.PermRead)
	for _, c := range []struct {
		c      cred
		q      raw
		status int
		code   string
	}{
		{starRead, raw{method: "GET", target: "/nosuch?location"}, 404, "NoSuchBucket"},
		{starRead, raw{method: "GET", target: "/nosuch/obj"}, 404, "NoSuchBucket"},
		{starRead, raw{method: "PUT", target: "/secret/new", body: []byte("new")}, 403, "AccessDenied"},
		{e.admin, raw{method: "GET", target: "/nosuch"}, 404, "NoSuchBucket"},
		{creds["glob-admin"], raw{method: "GET", target: "/ci-missing"}, 404, "NoSuchBucket"},
	} {
		resp, b := e.do(c.c, c.q)
		expectError(t, resp, b, c.status, c.code)
	}
	resp, b = e.do(starRead, raw{method: "HEAD", target: "/nosuch"})
	expectStatus(t, resp, b, http.StatusNotFound)
}
