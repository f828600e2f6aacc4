package sigv4

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// The credentials of AWS's published examples.
const (
	exampleKeyID  = "AKIAIOSFODNN7EXAMPLE"
	exampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	exampleDate   = "20130524T000000Z"
)

// Credentials for the round trips with real signers.
const (
	testKeyID  = "LARDERTESTKEY"
	testSecret = "larder/test+secret=with/odd+chars"
)

var testKeys = map[string]string{
	exampleKeyID: exampleSecret,
	testKeyID:    testSecret,
}

func lookupTestKeys(_ context.Context, id string) (string, error) {
	if s, ok := testKeys[id]; ok {
		return s, nil
	}
	return "", ErrUnknownKey
}

func exampleTime(t testing.TB) time.Time {
	t.Helper()
	at, err := time.Parse(amzDateFormat, exampleDate)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// at returns Options whose clock is fixed at now.
func at(now time.Time) Options {
	return Options{Now: func() time.Time { return now }}
}

// verifyAndRead verifies r and drains its body.
func verifyAndRead(t testing.TB, r *http.Request, opts Options) (*Request, []byte, error) {
	t.Helper()
	req, err := Verify(context.Background(), r, lookupTestKeys, opts)
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	return req, data, err
}

// errCode returns the S3 code of err, or "" (failing t) if err is not an
// *Error.
func errCode(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *sigv4.Error", err, err)
	}
	return e.Code
}

// wantCode fails t unless err is an *Error with the given code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if got := errCode(t, err); got != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
}

// oneByteReader returns its data one byte per Read.
type oneByteReader struct{ data []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}
