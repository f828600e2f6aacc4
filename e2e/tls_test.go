package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, PEM-encoded,
// and returns their paths.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "larder test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

// tlsServer is a larder serving HTTPS, and the client configuration that
// trusts its certificate.
type tlsServer struct {
	*server
	tls *tls.Config
}

// startTLSServer starts larder with extra (which gives --tls-cert and
// --tls-key) on a fresh data directory, trusting certFile, and waits
// until it answers over HTTPS. It is killed when the test ends.
func startTLSServer(t *testing.T, certFile string, extra ...string) *tlsServer {
	t.Helper()
	data, addr := t.TempDir(), freeAddr(t)
	cmd := exec.Command(larderBin, append([]string{"serve", "--data", data, "--listen", addr}, extra...)...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("larder output:\n%s", tail(log.String(), 40))
		}
	})
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(certFile)
	must(t, err)
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer client.CloseIdleConnections()
	base := "https://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := client.Get(base + "/_larder/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("larder did not answer over https: %v\n%s", err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	must(t, err)
	return &tlsServer{tls: cfg, server: &server{URL: base, Host: "127.0.0.1", Addr: addr, Data: data,
		AdminToken: strings.TrimSpace(string(tok)), log: log, cmd: cmd}}
}

// TestTLS serves over HTTPS with --tls-cert and --tls-key: Nix pushes and
// verifies through it (trusting the certificate with NIX_SSL_CERT_FILE),
// and awscli syncs into it over HTTPS. (The SDK clients' HTTPS-only
// trailing checksums are tested in internal/s3api and internal/sigv4.)
func TestTLS(t *testing.T) {
	t.Parallel()
	n := needNix(t)
	certFile, keyFile := selfSigned(t)
	ts := startTLSServer(t, certFile, "--tls-cert", certFile, "--tls-key", keyFile)
	srv, base := ts.server, ts.URL
	if !strings.Contains(ts.log.String(), "larder is serving "+base) {
		t.Errorf("the start message does not give the https URL:\n%s", ts.log.String())
	}
	key := srv.pubkey(t, "main")

	tlsNix := &nix{t: t, home: n.home, caFile: certFile}
	c := tlsNix.buildPair("tls-" + randomHex(4))
	tlsNix.withNetrc("127.0.0.1", srv.AdminToken).run("nix", "copy", "--to", base+"/main?compression=zstd", c.Top)
	reader := &nix{t: t, home: t.TempDir(), caFile: certFile}
	reader.run("nix", "store", "verify", "--store", base+"/main", "--trusted-public-keys", key, "-r", c.Top)

	// awscli over HTTPS, into a second cache.
	aws := needTool(t, "aws")
	srv.cli(t, "cache", "create", "viatls")
	id, secret := srv.s3Key(t, "viatls", "write")
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "artefact.txt"), []byte("over https\n"), 0o644))
	sync := exec.Command(aws, "--endpoint-url", base, "--ca-bundle", certFile, "s3", "sync", "--no-progress", dir, "s3://viatls/")
	sync.Env = []string{"HOME=" + t.TempDir(), "AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_DEFAULT_REGION=garage", "PATH=" + os.Getenv("PATH")}
	if out, err := sync.CombinedOutput(); err != nil {
		t.Fatalf("aws s3 sync over https: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`op=PutObject key=\S+ status=200`).MatchString(ts.log.String()) {
		t.Errorf("no successful PutObject over https in the log:\n%s", tail(ts.log.String(), 20))
	}
}
