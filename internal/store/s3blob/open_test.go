package s3blob

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	aws := map[string]string{"AWS_REGION": "eu-west-1"}
	awsDefault := map[string]string{"AWS_DEFAULT_REGION": "eu-central-1"}
	cases := []struct {
		url  string
		env  map[string]string
		want config
	}{
		{"s3://bucket", nil, config{bucket: "bucket", endpoint: awsEndpoint, secure: true}},
		{"s3://bucket/", aws, config{bucket: "bucket", endpoint: awsEndpoint, secure: true, region: "eu-west-1"}},
		{"s3://bucket", awsDefault, config{bucket: "bucket", endpoint: awsEndpoint, secure: true, region: "eu-central-1"}},
		{"s3://my.bucket/nar?region=us-west-2", aws,
			config{bucket: "my.bucket", prefix: "nar", endpoint: awsEndpoint, secure: true, region: "us-west-2"}},
		{"s3://bucket/a/b?endpoint=http://127.0.0.1:9000", nil,
			config{bucket: "bucket", prefix: "a/b", endpoint: "127.0.0.1:9000", pathStyle: true, region: defaultRegion}},
		{"s3://bucket/a/b/?endpoint=https://minio.example:9000/&region=garage", aws,
			config{bucket: "bucket", prefix: "a/b", endpoint: "minio.example:9000", secure: true, pathStyle: true, region: "garage"}},
		{"s3://bucket?endpoint=https://s3.example", aws,
			config{bucket: "bucket", endpoint: "s3.example", secure: true, pathStyle: true, region: "eu-west-1"}},
		{"s3://bucket?endpoint=http%3A%2F%2F%5B%3A%3A1%5D%3A9000", nil,
			config{bucket: "bucket", endpoint: "[::1]:9000", pathStyle: true, region: defaultRegion}},
		{"s3://bucket?endpoint=http://h:1&access_key=ak&secret_key=s%2Fk", nil,
			config{bucket: "bucket", endpoint: "h:1", pathStyle: true, region: defaultRegion, accessKey: "ak", secretKey: "s/k"}},
	}
	for _, c := range cases {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseURL(u, func(k string) string { return c.env[k] })
		if err != nil {
			t.Errorf("parse %s: %v", c.url, err)
			continue
		}
		if got != c.want {
			t.Errorf("parse %s:\n got %+v\nwant %+v", c.url, got, c.want)
		}
	}
}

func TestParseURLRejects(t *testing.T) {
	bad := []string{
		"file:///srv/blobs",
		"s3:bucket",
		"s3://",
		"s3:///prefix",
		"s3://user:secret@bucket",
		"s3://Bucket",
		"s3://bucket_name",
		"s3://bucket:9000",
		"s3://b",
		"s3://bucket#x",
		"s3://bucket/UPPER",
		"s3://bucket/a//b",
		"s3://bucket/../x",
		"s3://bucket/a/./b",
		"s3://bucket/a%20b",
		"s3://bucket/" + strings.Repeat("p", maxPrefixLen+1),
		"s3://bucket?endpoint=ftp://host",
		"s3://bucket?endpoint=host:9000",
		"s3://bucket?endpoint=http://",
		"s3://bucket?endpoint=http://:9000",
		"s3://bucket?endpoint=http://host/path",
		"s3://bucket?endpoint=http://u:p@host",
		"s3://bucket?endpoint=http%3A%2F%2Fhost%3Fx%3D1",
		"s3://bucket?endpoint=",
		"s3://bucket?endpoint=http://a&endpoint=http://b",
		"s3://bucket?region=a&region=b",
		"s3://bucket?access_key=ak",
		"s3://bucket?secret_key=sk",
		"s3://bucket?typo=1",
		"s3://bucket?%zz",
	}
	for _, s := range bad {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("parse %s as a URL: %v", s, err)
		}
		if c, err := parseURL(u, func(string) string { return "" }); err == nil {
			t.Errorf("parse %s: no error, got %+v", s, c)
		}
	}
}

// TestParseURLHidesEndpointSecrets: a refused endpoint is named in the
// error without the credentials or password put in it.
func TestParseURLHidesEndpointSecrets(t *testing.T) {
	for _, s := range []string{
		"s3://bucket?endpoint=http://AKIAEXAMPLE:s3cr3t@host:9000",
		"s3://bucket?endpoint=http://AKIAEXAMPLE:s3cr3t@host:9000/path",
		"s3://bucket?endpoint=ftp://AKIAEXAMPLE:s3cr3t@host",
		"s3://bucket?endpoint=http%3A%2F%2FAKIAEXAMPLE%3As3cr3t%25zz%40host",
	} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("parse %s as a URL: %v", s, err)
		}
		_, err = parseURL(u, func(string) string { return "" })
		if err == nil {
			t.Fatalf("parse %s: no error", s)
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "AKIAEXAMPLE") {
			t.Errorf("parse %s: the error %q shows the credentials", s, err)
		}
	}
}
