package e2e

import (
	"testing"
)

// TestS3Empty uploads a binary cache with aws s3 sync, empties the cache
// with each client's recursive delete (mc rm --recursive --force, aws s3 rm
// --recursive, s3cmd del --recursive --force), and checks that the cache is
// empty but alive: no narinfo or NAR served over the Nix protocol, an S3
// listing with at most nix-cache-info, nix-cache-info still served. Then
// the same closure is pushed again (nix copy --to http:// with a netrc
// token, or aws s3 sync) and must be served and verify.
func TestS3Empty(t *testing.T) {
	cases := []struct {
		name  string
		empty func(u *s3User)
		push  string // "nix" or "aws"
	}{
		{"mc-rm", func(u *s3User) { u.mc("rm", "--recursive", "--force", "larder/nix/") }, "nix"},
		{"aws-s3-rm", func(u *s3User) { u.aws("s3", "rm", "--recursive", "s3://nix") }, "aws"},
		// s3cmd refuses to delete a whole bucket's content without --force.
		{"s3cmd-del", func(u *s3User) { u.s3cmd("del", "--recursive", "--force", "s3://nix") }, "nix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			u := s3Cache(t, srv, "nix", "write")
			n := needNix(t)
			bc := n.makeBinaryCache(n.buildClosure("s3empty-" + tc.name + "-" + randomHex(4)))
			u.aws("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
			for _, p := range bc.Closure.Paths {
				if code := srv.narInfoStatus(t, "nix", p); code != 200 {
					t.Fatalf("narinfo of %s after aws s3 sync: %d", p, code)
				}
			}

			tc.empty(u)
			checkNothingServed(t, srv, "nix", bc)
			if keys := u.awsKeys("nix"); len(keys) > 1 || len(keys) == 1 && keys[0] != "nix-cache-info" {
				t.Errorf("after %s aws s3 ls lists %v, want at most nix-cache-info", tc.name, keys)
			}
			checkCacheInfo(t, srv, "nix")
			reader := needNix(t)
			if _, _, err := reader.try("nix", "path-info", "--store", srv.cacheURL("nix"), bc.Closure.Top); err == nil {
				t.Errorf("nix path-info still finds %s after %s", bc.Closure.Top, tc.name)
			}

			switch tc.push {
			case "nix":
				pusher := needNix(t).withNetrc(srv.Host, srv.token(t, "nix", "write"))
				pusher.run("nix", "copy", "--to", srv.cacheURL("nix"), bc.Closure.Top)
			case "aws":
				u.aws("s3", "sync", "--no-progress", bc.Dir, "s3://nix")
			}
			checkServed(t, srv, "nix", bc)
		})
	}
}
