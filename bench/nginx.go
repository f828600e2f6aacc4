//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// nginxConf serves root as static files the way a cache bucket behind a
// web server is served: sendfile, keep-alive, no access log (larder runs
// with its access log off too).
const nginxConf = `
worker_processes auto;
%[4]s
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  types { text/x-nix-narinfo narinfo; }
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  fastcgi_temp_path %[1]s/nginx-fastcgi;
  uwsgi_temp_path %[1]s/nginx-uwsgi;
  scgi_temp_path %[1]s/nginx-scgi;
  server {
    listen %[2]s;
    root %[3]s;
  }
  server {
    listen %[5]s ssl http2;
    ssl_certificate %[6]s;
    ssl_certificate_key %[7]s;
    root %[3]s;
  }
}
`

// nginxProc is nginx serving a cache over HTTP and over HTTPS with HTTP/2.
type nginxProc struct {
	*proc
	TLSURL string
}

// startNginx serves root on a free port, and over HTTPS with HTTP/2 (the
// certificate cert and its key) on another.
func startNginx(ctx context.Context, work, root, cert, key string) (*nginxProc, error) {
	addr, tlsAddr := freeAddr(), freeAddr()
	user := ""
	if os.Getuid() == 0 {
		user = "user root;" // the workers must read the benchmark's private directory
	}
	conf := filepath.Join(work, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, work, addr, root, user, tlsAddr, cert, key)), 0o644); err != nil {
		return nil, err
	}
	p, _, err := start(ctx, "nginx", "http://"+addr, "/main/nix-cache-info", nil, "nginx", "-c", conf, "-p", work)
	if err != nil {
		return nil, err
	}
	return &nginxProc{proc: p, TLSURL: "https://" + tlsAddr}, nil
}
