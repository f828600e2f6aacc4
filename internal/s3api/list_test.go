package s3api_test

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/larder-cache/larder/internal/store"
)

// fillCache records plain objects under the keys, all with the same small
// body, directly in the stores: a listing test is about listing, and 2500
// uploads would take most of its time.
func (e *env) fillCache(cache string, keys []string) {
	e.t.Helper()
	ctx := e.t.Context()
	c, err := e.app.Meta.GetCache(ctx, cache)
	if err != nil {
		e.t.Fatal(err)
	}
	body := []byte("listed")
	if err := e.app.Blobs.Put(ctx, "object/fill/"+cache, bytes.NewReader(body), int64(len(body))); err != nil {
		e.t.Fatal(err)
	}
	for _, k := range keys {
		o := store.Object{CacheID: c.ID, Key: k, Size: int64(len(body)), SHA256: sha256Hex(body), MD5: md5Hex(body),
			ETag: md5Hex(body), BlobKey: "object/fill/" + cache}
		if err := e.app.Meta.PutObject(ctx, o); err != nil {
			e.t.Fatal(err)
		}
	}
}

// listingKeys are about 2500 keys: many under directories, some at the
// top, some unusual.
func listingKeys() []string {
	var keys []string
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("top-%03d", i))
	}
	for d := range 20 {
		for i := range 115 {
			keys = append(keys, fmt.Sprintf("dir%02d/f%04d", d, i))
		}
		keys = append(keys, fmt.Sprintf("dir%02d/sub/g", d))
	}
	return append(keys, unusualKeys...)
}

// listV2 pages through ListObjectsV2 with the paginator and returns every
// key and common prefix, URL-decoded if the listing was URL-encoded.
func listV2(t *testing.T, c *s3.Client, in s3.ListObjectsV2Input) (keys, prefixes []string) {
	t.Helper()
	decode := func(s string) string {
		if in.EncodingType != types.EncodingTypeUrl {
			return s
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			t.Fatalf("listed key %q is not URL-encoded: %v", s, err)
		}
		return d
	}
	in.Bucket = aws.String("main")
	pages := 0
	for p := s3.NewListObjectsV2Paginator(c, &in); p.HasMorePages(); {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		n := len(out.Contents) + len(out.CommonPrefixes)
		if max := aws.ToInt32(in.MaxKeys); max > 0 && n > int(max) || aws.ToInt32(out.KeyCount) != int32(n) {
			t.Fatalf("page of %d entries, KeyCount %d, max-keys %d", n, aws.ToInt32(out.KeyCount), aws.ToInt32(in.MaxKeys))
		}
		for _, o := range out.Contents {
			keys = append(keys, decode(aws.ToString(o.Key)))
		}
		for _, cp := range out.CommonPrefixes {
			prefixes = append(prefixes, decode(aws.ToString(cp.Prefix)))
		}
		if pages > 10000 {
			t.Fatal("the listing does not end")
		}
	}
	return keys, prefixes
}

// expectOnce checks that got holds each of want exactly once, in byte order.
func expectOnce(t *testing.T, what string, got, want []string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		missing, extra := diff(want, got), diff(got, want)
		t.Fatalf("%s: %d entries, want %d; missing %q, unexpected %q (or out of order / repeated)", what, len(got), len(want), missing, extra)
	}
}

// diff returns the elements of a not in b.
func diff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

func TestListObjectsV2Paging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keys := listingKeys()
	e.fillCache("main", keys)
	all := slices.Clone(keys) // the cache's own nix-cache-info is served, not listed
	c := e.awsClient(e.srv, e.admin)

	got, prefixes := listV2(t, c, s3.ListObjectsV2Input{MaxKeys: aws.Int32(97)})
	expectOnce(t, "max-keys 97", got, all)
	if len(prefixes) != 0 {
		t.Errorf("common prefixes without a delimiter: %q", prefixes)
	}
	got, _ = listV2(t, c, s3.ListObjectsV2Input{MaxKeys: aws.Int32(1000), EncodingType: types.EncodingTypeUrl})
	expectOnce(t, "encoding-type=url", got, all)

	// With a delimiter: the top-level keys, and each directory once.
	var top, dirs []string
	for _, k := range all {
		if i := strings.Index(k, "/"); i >= 0 {
			if !slices.Contains(dirs, k[:i+1]) {
				dirs = append(dirs, k[:i+1])
			}
		} else {
			top = append(top, k)
		}
	}
	for _, tc := range []struct {
		max int32
		enc types.EncodingType
	}{{1, ""}, {7, types.EncodingTypeUrl}, {1000, ""}, {1000, types.EncodingTypeUrl}} {
		got, prefixes = listV2(t, c, s3.ListObjectsV2Input{Delimiter: aws.String("/"), MaxKeys: aws.Int32(tc.max), EncodingType: tc.enc})
		expectOnce(t, fmt.Sprintf("delimiter / max-keys %d %s: keys", tc.max, tc.enc), got, top)
		expectOnce(t, fmt.Sprintf("delimiter / max-keys %d %s: prefixes", tc.max, tc.enc), prefixes, dirs)
	}

	// A prefix, a delimiter and a start-after.
	var dir3 []string
	for i := range 115 {
		dir3 = append(dir3, fmt.Sprintf("dir03/f%04d", i))
	}
	got, prefixes = listV2(t, c, s3.ListObjectsV2Input{Prefix: aws.String("dir03/"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(10)})
	expectOnce(t, "prefix dir03/", got, dir3)
	expectOnce(t, "prefix dir03/: prefixes", prefixes, []string{"dir03/sub/"})
	got, _ = listV2(t, c, s3.ListObjectsV2Input{Prefix: aws.String("dir03/"), StartAfter: aws.String("dir03/f0099"), MaxKeys: aws.Int32(4)})
	expectOnce(t, "start-after dir03/f0099", got, append(slices.Clone(dir3[100:]), "dir03/sub/g"))
	got, prefixes = listV2(t, c, s3.ListObjectsV2Input{StartAfter: aws.String("dir18/"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(3)})
	expectOnce(t, "start-after dir18/: keys", got, slices.DeleteFunc(slices.Clone(top), func(k string) bool { return k < "dir18/" }))
	expectOnce(t, "start-after dir18/: prefixes", prefixes, slices.DeleteFunc(slices.Clone(dirs), func(k string) bool { return k <= "dir18/" }))
	got, _ = listV2(t, c, s3.ListObjectsV2Input{Prefix: aws.String("&+-é\"/"), EncodingType: types.EncodingTypeUrl})
	expectOnce(t, "unusual prefix", got, []string{`&+-é"/ x`})
	got, _ = listV2(t, c, s3.ListObjectsV2Input{Prefix: aws.String("no-such-prefix/")})
	if len(got) != 0 {
		t.Errorf("unmatched prefix listed %q", got)
	}

	// The raw form: URL-encoded keys and prefixes, a continuation token.
	resp, b := e.do(e.admin, raw{method: "GET", target: "/main?list-type=2&encoding-type=url&prefix=a%20b%2F&delimiter=%2F&fetch-owner=true"})
	expectStatus(t, resp, b, 200)
	for _, want := range []string{"<Prefix>a%20b/</Prefix>", "<Key>a%20b/c%2Bd%26e%3D%C3%A9%22f</Key>", "<EncodingType>url</EncodingType>"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("ListObjectsV2 with encoding-type=url lacks %s:\n%s", want, b)
		}
	}
	resp, b = e.do(e.admin, raw{method: "GET", target: "/main?list-type=2&continuation-token=%21%21"})
	expectError(t, resp, b, 400, "InvalidArgument")
}

func TestListObjectsV1Marker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var keys []string
	for d := range 4 {
		for i := range 30 {
			keys = append(keys, fmt.Sprintf("d%d/k%02d", d, i))
		}
		keys = append(keys, fmt.Sprintf("k%d", d))
	}
	keys = append(keys, unusualKeys...)
	e.fillCache("main", keys)
	all := slices.Clone(keys)
	c := e.awsClient(e.srv, e.admin)

	// list pages with ListObjects as s3cmd, rclone and Nix do: the next
	// marker is NextMarker if given, else the last key.
	list := func(in s3.ListObjectsInput) (keys, prefixes []string) {
		t.Helper()
		in.Bucket = aws.String("main")
		for range 10000 {
			out, err := c.ListObjects(t.Context(), &in)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range out.Contents {
				keys = append(keys, aws.ToString(o.Key))
				if o.Owner == nil || aws.ToString(o.ETag) == "" {
					t.Errorf("ListObjects: %s without owner or ETag", aws.ToString(o.Key))
				}
			}
			for _, p := range out.CommonPrefixes {
				prefixes = append(prefixes, aws.ToString(p.Prefix))
			}
			if !aws.ToBool(out.IsTruncated) {
				return keys, prefixes
			}
			next := aws.ToString(out.NextMarker)
			if next == "" {
				if in.Delimiter != nil {
					t.Fatal("truncated delimited listing without NextMarker")
				}
				next = keys[len(keys)-1]
			}
			in.Marker = aws.String(next)
		}
		t.Fatal("the listing does not end")
		return nil, nil
	}
	got, _ := list(s3.ListObjectsInput{MaxKeys: aws.Int32(13)})
	expectOnce(t, "V1 max-keys 13", got, all)
	got, prefixes := list(s3.ListObjectsInput{MaxKeys: aws.Int32(2), Delimiter: aws.String("/")})
	var top, dirs []string
	for _, k := range all {
		if i := strings.Index(k, "/"); i >= 0 {
			if !slices.Contains(dirs, k[:i+1]) {
				dirs = append(dirs, k[:i+1])
			}
		} else {
			top = append(top, k)
		}
	}
	expectOnce(t, "V1 delimiter: keys", got, top)
	expectOnce(t, "V1 delimiter: prefixes", prefixes, dirs)
	got, _ = list(s3.ListObjectsInput{Prefix: aws.String("d2/"), Marker: aws.String("d2/k27")})
	expectOnce(t, "V1 marker", got, []string{"d2/k28", "d2/k29"})
	// A marker that is a common prefix continues after the whole group.
	got, prefixes = list(s3.ListObjectsInput{Delimiter: aws.String("/"), Marker: aws.String("d1/")})
	expectOnce(t, "V1 marker d1/: keys", got, slices.DeleteFunc(slices.Clone(top), func(k string) bool { return k <= "d1/" }))
	expectOnce(t, "V1 marker d1/: prefixes", prefixes, slices.DeleteFunc(slices.Clone(dirs), func(k string) bool { return k <= "d1/" }))
}
