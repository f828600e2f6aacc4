//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into work, for
// larder's --tls-cert and nginx's ssl_certificate alike.
func selfSigned(work string) (cert, key string, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "larder-bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(work, "bench-cert.pem"), filepath.Join(work, "bench-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return cert, key, os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

var (
	h2RPS    = regexp.MustCompile(`finished in [\d.]+\w*, ([\d.]+) req/s`)
	h2Status = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2Reqs   = regexp.MustCompile(`requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
)

// runH2load sends GETs of paths (cycled) to base over HTTPS with HTTP/2,
// conns connections of streams concurrent streams each, for d, as Nix's
// curl multiplexes narinfo lookups; latency comes from h2load's
// per-request log.
func runH2load(ctx context.Context, work, base string, paths []string, conns, streams int, d time.Duration) (load, error) {
	list := filepath.Join(work, "h2load-uris")
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(base + p + "\n")
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		return load{}, err
	}
	logFile := filepath.Join(work, "h2load.log")
	_ = os.Remove(logFile)
	out, err := output(ctx, nil, "h2load", "-c", strconv.Itoa(conns), "-m", strconv.Itoa(streams),
		"-t", "2", "-D", strconv.Itoa(int(d.Seconds())), "--warm-up-time=1", "-i", list, "--log-file="+logFile)
	if err != nil {
		return load{}, err
	}
	var l load
	m := h2RPS.FindStringSubmatch(out)
	if m == nil {
		return l, fmt.Errorf("h2load printed no req/s:\n%s", out)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := h2Reqs.FindStringSubmatch(out); m != nil {
		l.requests, _ = strconv.ParseInt(m[2], 10, 64)
		if e, _ := strconv.Atoi(m[5]); e > 0 {
			return l, fmt.Errorf("h2load: %s requests errored:\n%s", m[5], out)
		}
	}
	// Requests still in flight when the time is up count as done without
	// a status: count the answers that were not 2xx.
	if m := h2Status.FindStringSubmatch(out); m != nil {
		for _, v := range m[2:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			l.non2xx += n
		}
		ok, _ := strconv.ParseInt(m[1], 10, 64)
		l.requests = ok + l.non2xx
	}
	l.p50, l.p99, err = h2Latency(logFile)
	return l, err
}

// h2Latency reads the median and 99th percentile, in milliseconds, of the
// request durations (microseconds, the third column) of an h2load log.
func h2Latency(path string) (p50, p99 float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var us []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[2], 64); err == nil {
			us = append(us, v)
		}
	}
	if len(us) == 0 {
		return 0, 0, fmt.Errorf("h2load logged no requests in %s", path)
	}
	slices.Sort(us)
	at := func(q float64) float64 { return us[min(len(us)-1, int(q*float64(len(us))))] / 1000 }
	return at(0.5), at(0.99), sc.Err()
}

// h2Measures: narinfo hits and misses over HTTPS with HTTP/2, larder (on
// the cache's data, with --tls-cert) against nginx (listen … ssl http2,
// the same certificate), 16 connections of 16 streams.
func h2Measures(ctx context.Context, o options, r *report, data string, d *dataset, hits, misses []string, nginxTLS string, cert, key string) error {
	l, err := startProfiled(ctx, o, data, "--tls-cert", cert, "--tls-key", key)
	if err != nil {
		return err
	}
	defer l.stop()
	time.Sleep(2 * time.Second) // past the chunking pass a server makes a second after it starts
	l.settle(ctx)
	dur := time.Duration(o.seconds) * time.Second
	for run := range o.runs {
		fmt.Printf("narinfo lookups over HTTP/2, run %d…\n", run+1)
		for _, c := range []struct {
			name  string
			paths []string
			hit   bool
		}{{"hits", hits, true}, {"misses", misses, false}} {
			stopProfile := l.profile(ctx, o.profile, fmt.Sprintf("narinfo-h2-%s-%d", c.name, run+1), dur)
			lr, err := runH2load(ctx, o.work, l.URL, c.paths, 16, 16, dur)
			stopProfile()
			if err != nil {
				return err
			}
			nr, err := runH2load(ctx, o.work, nginxTLS, c.paths, 16, 16, dur)
			if err != nil {
				return err
			}
			if c.hit && (lr.non2xx > 0 || nr.non2xx > 0) || !c.hit && (lr.non2xx != lr.requests || nr.non2xx != nr.requests) {
				return fmt.Errorf("narinfo %s over HTTP/2 answered wrongly: larder %d of %d not 2xx, nginx %d of %d", c.name,
					lr.non2xx, lr.requests, nr.non2xx, nr.requests)
			}
			r.add("narinfo "+c.name+", HTTPS + HTTP/2, requests/s (16 conn × 16 streams)", "req/s", "nginx", "≥ 1.0", lr.rps, nr.rps)
			r.add("narinfo "+c.name+", HTTPS + HTTP/2, p99 latency", "ms", "nginx", "(lower is better)", lr.p99, nr.p99)
		}
	}
	if o.wants("nar") {
		return h2Downloads(ctx, o, r, d, l.URL, nginxTLS, cert)
	}
	return nil
}

// h2Downloads measures the NAR downloads over HTTPS and HTTP/2, four
// streams on one connection, as curl fetches them for Nix.
func h2Downloads(ctx context.Context, o options, r *report, d *dataset, larderURL, nginxURL, cert string) error {
	pem, err := os.ReadFile(cert)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	newClient := func() *http.Client {
		return &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, DisableCompression: true,
			TLSClientConfig: &tls.Config{RootCAs: roots}}}
	}
	return downloadMeasures(ctx, o, r, d, larderURL, nginxURL, "HTTPS + HTTP/2", newClient)
}
