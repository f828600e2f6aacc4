package config

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		name, setting, value, want string
		secrets                    []string // none of which may be left
	}{
		{name: "postgres URL with a password", setting: "meta",
			value: "postgres://larder:hunter2@db.internal:5432/larder?sslmode=require",
			want:  "postgres://larder:xxxxx@db.internal:5432/larder?sslmode=require", secrets: []string{"hunter2"}},
		{name: "postgres URL without a password keeps the role", setting: "meta",
			value: "postgres://larder@db.internal/larder", want: "postgres://larder@db.internal/larder"},
		{name: "postgres URL with password and sslpassword parameters", setting: "meta",
			value:   "postgresql://db/larder?user=larder&password=hunter2&sslpassword=keypass&sslmode=verify-full",
			want:    "postgresql://db/larder?user=larder&password=xxxxx&sslpassword=xxxxx&sslmode=verify-full",
			secrets: []string{"hunter2", "keypass"}},
		{name: "postgres URL with an escaped password", setting: "meta",
			value: "postgres://larder:p%40ss%3Aw0rd@db/larder", want: "postgres://larder:xxxxx@db/larder", secrets: []string{"p%40ss", "w0rd"}},
		{name: "key=value DSN", setting: "meta",
			value: "host=db.internal user=larder password=hunter2 dbname=larder",
			want:  "host=db.internal user=larder password=xxxxx dbname=larder", secrets: []string{"hunter2"}},
		{name: "key=value DSN with quoted values", setting: "meta",
			value: `host=db password = 'hunter 2 \' x' sslpassword='kp' sslmode=require`,
			want:  `host=db password = xxxxx sslpassword=xxxxx sslmode=require`, secrets: []string{"hunter", "kp'"}},
		{name: "key=value DSN that does not parse", setting: "meta",
			value: "host=db password='hunter2", want: Hidden, secrets: []string{"hunter2"}},
		{name: "s3 URL with credentials in the userinfo", setting: "blobs",
			value: "s3://AKIAEXAMPLE:wJalrXUtnFEMI@nix-cache/larder?region=garage",
			want:  "s3://xxxxx@nix-cache/larder?region=garage", secrets: []string{"AKIAEXAMPLE", "wJalrXUtnFEMI"}},
		{name: "s3 URL with credentials in the query", setting: "blobs",
			value:   "s3://nix-cache/larder?endpoint=https://garage.internal:3900&access_key=AKIAEXAMPLE&secret_key=wJalrXUtnFEMI&region=garage",
			want:    "s3://nix-cache/larder?endpoint=https://garage.internal:3900&access_key=xxxxx&secret_key=xxxxx&region=garage",
			secrets: []string{"AKIAEXAMPLE", "wJalrXUtnFEMI"}},
		{name: "s3 URL with presigned parameters", setting: "blobs",
			value:   "s3://b/p?X-Amz-Credential=AKIAEXAMPLE%2F20250101&X-Amz-Signature=abcdef0123&X-Amz-Security-Token=tok3n",
			want:    "s3://b/p?X-Amz-Credential=xxxxx&X-Amz-Signature=xxxxx&X-Amz-Security-Token=xxxxx",
			secrets: []string{"AKIAEXAMPLE", "abcdef0123", "tok3n"}},
		{name: "s3 endpoint with userinfo", setting: "blobs",
			value:   "s3://b/p?endpoint=http://minio:miniosecret@127.0.0.1:9000&region=x",
			secrets: []string{"miniosecret", "minio:"}},
		{name: "URL with a token as user name", setting: "public_url",
			value: "https://ghp_t0ken@cache.example.org", want: "https://xxxxx@cache.example.org", secrets: []string{"ghp_t0ken"}},
		{name: "URL that does not parse", setting: "meta",
			value: "postgres://larder:hun%zzter2@db/larder", secrets: []string{"hun", "zzter2", "larder"}},
		{name: "setting named as a secret", setting: "s3_secret_key", value: "wJalrXUtnFEMI", want: Hidden, secrets: []string{"wJalrXUtnFEMI"}},
		{name: "plain URL", setting: "blobs",
			value: "s3://b/p?endpoint=http://127.0.0.1:1&region=x", want: "s3://b/p?endpoint=http://127.0.0.1:1&region=x"},
		{name: "file URL", setting: "blobs", value: "file:///var/lib/larder/blobs", want: "file:///var/lib/larder/blobs"},
		{name: "path with an equals sign", setting: "data", value: "/srv/pass=word/larder", want: "/srv/pass=word/larder"},
		{name: "tls_key names a file, not its contents", setting: "tls_key", value: "/etc/larder/key.pem", want: "/etc/larder/key.pem"},
		{name: "size", setting: "max_nar_size", value: "32GiB", want: "32GiB"},
		{name: "a limit whose name holds a secret's word", setting: "max_signatures", value: "16", want: "16"},
		{name: "empty", setting: "meta", value: "", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.setting, tc.value)
			if tc.want != "" && got != tc.want {
				t.Errorf("Redact(%q, %q) = %q, want %q", tc.setting, tc.value, got, tc.want)
			}
			for _, s := range tc.secrets {
				if strings.Contains(got, s) {
					t.Errorf("Redact(%q, %q) = %q, which still holds %q", tc.setting, tc.value, got, s)
				}
			}
			if len(tc.secrets) > 0 && !strings.Contains(got, Hidden) {
				t.Errorf("Redact(%q, %q) = %q, which does not show that something was hidden", tc.setting, tc.value, got)
			}
		})
	}
}

// TestRedactValidateErrors checks that Validate's messages about URLs do
// not print the secrets in them.
func TestRedactValidateErrors(t *testing.T) {
	c := Default()
	c.Meta = "mysql://larder:hunter2@db/larder"
	c.Blobs = "gs://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/p"
	c.PublicURL = "ftp://user:pubsecret@cache.example.org"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a mysql:// meta, a gs:// blobs and an ftp:// public_url")
	}
	for _, s := range []string{"hunter2", "AKIAEXAMPLE", "wJalrXUtnFEMI", "pubsecret"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("Validate's error holds the secret %q:\n%v", s, err)
		}
	}
	for _, s := range []string{"meta:", "blobs:", "public_url:"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("Validate's error does not name %s:\n%v", s, err)
		}
	}
}
