package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// keptConn opens a connection to addr and has one request answered on it,
// so that the server has accepted it, and keeps it open; it returns the
// status of the answer.
func keptConn(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	must(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(c, "GET /main/nix-cache-info HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, resp.StatusCode
}

// loopbackSpare is how many connections larder lets in from the loopback
// past max_connections, for its own health checks.
const loopbackSpare = 8

// TestMaxConnections: past max_connections (and the spare ones of the
// loopback) a new connection is answered 503 with a message that names
// the setting (curl shows it), the connections open go on being served,
// and a place freed is taken again.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--max-connections", "3")
	// The harness's health checks may hold a connection: free it.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var kept []net.Conn
	for deadline := time.Now().Add(10 * time.Second); len(kept) < 3+loopbackSpare; {
		c, status := keptConn(t, srv.Addr)
		switch status {
		case http.StatusOK:
			kept = append(kept, c)
		case http.StatusServiceUnavailable:
			c.Close() // the harness's connection is not closed yet
			if time.Now().After(deadline) {
				t.Fatalf("refused after %d connections, want %d", len(kept), 3+loopbackSpare)
			}
			time.Sleep(50 * time.Millisecond)
		default:
			t.Fatalf("connection %d: status %d", len(kept)+1, status)
		}
	}

	out, err := exec.Command("curl", "-sS", "-w", "\n%{http_code}", srv.URL+"/main/nix-cache-info").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "limit of 3 connections (max_connections)") || !strings.HasSuffix(string(out), "\n503") {
		t.Fatalf("a connection past the limit got:\n%s", out)
	}

	// The connections open are still served.
	_, err = io.WriteString(kept[0], "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n")
	must(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(kept[0]), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a kept connection: %v %v", resp, err)
	}
	resp.Body.Close()

	// One closed, a new one is served.
	kept[1].Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, status := keptConn(t, srv.Addr)
		if status == http.StatusOK {
			kept[1] = c
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after one closed: status %d", status)
		}
	}
	for _, c := range kept {
		c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(srv.URL + "/_larder/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m := string(b)
				if !strings.Contains(m, "larder_http_connections_open ") || strings.Contains(m, "larder_http_connections_refused_total 0\n") {
					t.Fatalf("metrics do not show the refusals:\n%s", strings.Join(grepLines(m, "larder_http_connections"), "\n"))
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %v", err)
		}
	}
}

// TestMaxConnectionsTLS: over TLS a connection past the limit is closed
// (the refusal cannot be read as HTTP before a handshake), and the
// connections open are still served.
func TestMaxConnectionsTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile := selfSigned(t)
	srv := startTLSServer(t, certFile, "--tls-cert", certFile, "--tls-key", keyFile, "--max-connections", "1")
	cfg := srv.tls.Clone()
	// The first connections wait for the server to let go of the one its
	// start-up check used.
	type kept struct {
		c  *tls.Conn
		br *bufio.Reader
	}
	var open []kept
	for deadline := time.Now().Add(10 * time.Second); len(open) < 1+loopbackSpare; time.Sleep(10 * time.Millisecond) {
		conn, err := tls.Dial("tcp", srv.Addr, cfg)
		var br *bufio.Reader
		if err == nil {
			br = bufio.NewReader(conn)
			err = getCacheInfo(conn, br)
		}
		if err == nil {
			open = append(open, kept{conn, br})
			defer conn.Close()
			continue
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %d: %v", len(open)+1, err)
		}
	}

	second, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.Addr, cfg)
	if err == nil {
		second.Close()
		t.Fatal("a TLS connection past the limit shook hands")
	}

	for i, k := range open {
		if err := getCacheInfo(k.c, k.br); err != nil {
			t.Fatalf("kept connection %d after a refusal: %v", i+1, err)
		}
	}
}

// getCacheInfo asks for nix-cache-info on c, whose reader is br, and
// reads the answer, which must be 200.
func getCacheInfo(c net.Conn, br *bufio.Reader) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /main/nix-cache-info HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
