package s3blob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// sdkRetries is how many times minio-go tries a request in all when it
// fails for a transient reason and its body can be sent again. It is kept
// low: the retry layer above the store retries reads, and a client that
// gets a 503 retries its write.
const sdkRetries = 3

// defaultRegion is the region assumed for an S3 server other than AWS when
// neither the URL nor the environment names one; MinIO and most others
// accept it.
const defaultRegion = "us-east-1"

// awsEndpoint is the endpoint used when the URL names none. minio-go
// turns it into the regional endpoint of the bucket.
const awsEndpoint = "s3.amazonaws.com"

// config is what an s3:// URL says.
type config struct {
	bucket    string
	prefix    string // as in the URL's path, without slashes at either end
	endpoint  string // host[:port]
	secure    bool   // https
	pathStyle bool   // path-style addressing; else virtual-host style
	region    string // "" lets minio-go ask AWS for the bucket's region
	accessKey string // from the query; "" means from the environment
	secretKey string
}

// Open opens the store a URL of the form
//
//	s3://BUCKET/PREFIX?endpoint=https://HOST:PORT&region=REGION
//
// names, and checks that the bucket exists. PREFIX is optional and follows
// the key rules. With endpoint, requests go there, path-style (every S3
// server but AWS); without it, to AWS, virtual-host style. The region is
// the URL's, else AWS_REGION or AWS_DEFAULT_REGION, else us-east-1 with an
// endpoint and the bucket's own on AWS.
//
// Credentials come from the standard AWS environment variables
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), else from
// the shared AWS files (~/.aws/credentials and ~/.aws/config, profile
// AWS_PROFILE), else, on AWS only, from the instance or container role;
// with none of these requests are anonymous. The query parameters
// access_key and secret_key, meant for tests, override all of them: a URL
// with keys in it is a secret.
func Open(ctx context.Context, u *url.URL) (*Store, error) {
	c, err := parseURL(u, os.Getenv)
	if err != nil {
		return nil, err
	}
	client, err := c.client()
	if err != nil {
		return nil, err
	}
	s, err := New(client, c.bucket, c.prefix)
	if err != nil {
		return nil, err
	}
	if err := s.checkBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// parseURL reads an s3:// URL, taking default regions from getenv.
func parseURL(u *url.URL, getenv func(string) string) (config, error) {
	var c config
	switch {
	case u.Scheme != "s3":
		return c, fmt.Errorf("scheme %q is not s3", u.Scheme)
	case u.Opaque != "":
		return c, errors.New("not of the form s3://BUCKET/PREFIX")
	case u.User != nil:
		return c, errors.New("credentials do not go before the bucket name: use the AWS environment variables")
	case u.Fragment != "":
		return c, errors.New("unexpected fragment")
	}
	c.bucket = u.Host
	if err := s3utils.CheckValidBucketNameStrict(c.bucket); err != nil {
		return c, fmt.Errorf("bucket %q: %w", c.bucket, err)
	}
	c.prefix = strings.Trim(u.Path, "/")
	if _, err := storePrefix(c.prefix); err != nil {
		return c, err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return c, fmt.Errorf("query: %w", err)
	}
	for name, vs := range q {
		switch name {
		case "endpoint", "region", "access_key", "secret_key":
		default:
			return c, fmt.Errorf("unknown parameter %q", name)
		}
		if len(vs) != 1 || vs[0] == "" {
			return c, fmt.Errorf("parameter %s: want one non-empty value", name)
		}
	}
	if err := c.setEndpoint(q.Get("endpoint")); err != nil {
		return c, err
	}
	c.accessKey, c.secretKey = q.Get("access_key"), q.Get("secret_key")
	if (c.accessKey == "") != (c.secretKey == "") {
		return c, errors.New("access_key and secret_key go together")
	}
	c.region = firstOf(q.Get("region"), getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
	if c.region == "" && c.pathStyle {
		c.region = defaultRegion
	}
	return c, nil
}

// setEndpoint reads the endpoint parameter: "" for AWS, else an http or
// https URL with a host and nothing after it.
func (c *config) setEndpoint(endpoint string) error {
	if endpoint == "" {
		c.endpoint, c.secure = awsEndpoint, true
		return nil
	}
	e, err := url.Parse(endpoint)
	if err != nil {
		// url.Error repeats the URL, which may hold a password.
		return errors.New("endpoint: not a URL")
	}
	// The messages show the endpoint without its userinfo, if any: that
	// may be a key.
	shown := (&url.URL{Scheme: e.Scheme, Host: e.Host, Path: e.Path}).String()
	switch {
	case e.Scheme != "http" && e.Scheme != "https":
		return fmt.Errorf("endpoint %q: scheme is not http or https", shown)
	case e.Host == "" || e.Hostname() == "":
		return fmt.Errorf("endpoint %q: no host", shown)
	case e.User != nil:
		return fmt.Errorf("endpoint %q: credentials do not go in the endpoint: use the AWS environment variables", shown)
	case (e.Path != "" && e.Path != "/") || e.RawQuery != "" || e.Fragment != "":
		return fmt.Errorf("endpoint %q: want only a scheme, a host and a port", shown)
	}
	c.endpoint, c.secure, c.pathStyle = e.Host, e.Scheme == "https", true
	return nil
}

// firstOf returns the first of vs that is not empty, or "".
func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// client returns a minio-go client for c.
func (c config) client() (*minio.Client, error) {
	tr, err := minio.DefaultTransport(c.secure)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	lookup := minio.BucketLookupDNS
	if c.pathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(c.endpoint, &minio.Options{
		Creds:        c.credentials(),
		Secure:       c.secure,
		Transport:    tr,
		Region:       c.region,
		BucketLookup: lookup,
		MaxRetries:   sdkRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", c.endpoint, err)
	}
	return client, nil
}

// credentials returns where c's requests take their keys from.
func (c config) credentials() *credentials.Credentials {
	if c.accessKey != "" {
		return credentials.NewStaticV4(c.accessKey, c.secretKey, "")
	}
	providers := []credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
	}
	if !c.pathStyle {
		// Only on AWS is there an instance metadata service to ask.
		providers = append(providers, &credentials.IAM{})
	}
	return credentials.NewChainCredentials(providers)
}
