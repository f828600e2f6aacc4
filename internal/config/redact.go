package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Hidden is what Redact puts in place of a secret.
const Hidden = "xxxxx"

// Redact returns value, the value of the named setting (its TOML key, such
// as "meta"), fit to print: in a log, an error message or check-config's
// output. Everything that echoes configuration passes it through here.
//
// A setting whose name says it is a secret (password, secret, token,
// credential) is hidden whole. In a URL, the userinfo is hidden (but for
// PostgreSQL's user name, which is a role, not a secret), and so is every
// query parameter whose name says it is a secret (password, sslpassword,
// secret_key, access_key, X-Amz-*, signature, token, …); a parameter
// holding a URL, such as an S3 endpoint, is redacted in turn. In a
// PostgreSQL key=value connection string, the values of such keys are
// hidden. Anything else, such as a file path, is returned as it is.
func Redact(setting, value string) string {
	switch {
	case value == "":
		return value
	case secretName(setting) && !strings.HasPrefix(setting, "max_"): // max_signatures is a limit
		return Hidden
	case urlScheme.MatchString(value):
		return redactURL(value)
	case strings.Contains(value, "="):
		return redactKeyValues(value)
	}
	return value
}

// secretWords are the parts of a name (of a setting, a query parameter, a
// connection string's key) that say its value is a secret.
var secretWords = regexp.MustCompile(`(?i)pass(word|wd)?|pwd|secret|token|credential|signature|^sig$|access_?key|api_?key|^auth|private|^x-amz-`)

// urlScheme matches the start of a URL with an authority: scheme://.
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

func secretName(name string) bool { return secretWords.MatchString(name) }

// redactURL hides the userinfo and the secret query parameters of a URL.
// One that does not parse keeps only its scheme: its boundaries are
// ambiguous, so any part of it could be a password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		scheme, _, _ := strings.Cut(s, "://")
		return scheme + "://" + Hidden + " (not a valid URL)"
	}
	if u.User != nil {
		name := u.User.Username()
		_, hasPassword := u.User.Password()
		switch {
		case u.Scheme != "postgres" && u.Scheme != "postgresql":
			u.User = url.User(Hidden)
		case hasPassword:
			u.User = url.UserPassword(name, Hidden)
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
	}
	return u.String()
}

// redactQuery hides the values of secret parameters in a raw query and
// redacts the URLs other parameters hold, leaving the rest as written.
func redactQuery(raw string) string {
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, v, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			parts[i] = Hidden
			continue
		}
		val, err := url.QueryUnescape(v)
		switch {
		case !hasValue:
		case secretName(name) || err != nil:
			parts[i] = k + "=" + Hidden
		case urlScheme.MatchString(val):
			if r := redactURL(val); r != val {
				parts[i] = k + "=" + url.QueryEscape(r)
			}
		}
	}
	return strings.Join(parts, "&")
}

// kvPair is one key=value pair of a PostgreSQL connection string, with
// its key and its value (quoted or not) as groups; kvStart is how such a
// string starts.
var (
	kvPair  = regexp.MustCompile(`^\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)*)`)
	kvStart = regexp.MustCompile(`^\s*[A-Za-z_]+\s*=`)
)

// redactKeyValues hides the secret values of a key=value connection string
// ("host=db user=larder password=…"). A value that is not such a string is
// returned as it is, unless it names a secret somewhere: then it is hidden
// whole, since where that secret ends is not known.
func redactKeyValues(s string) string {
	var b strings.Builder
	rest := s
	for len(strings.TrimSpace(rest)) > 0 {
		m := kvPair.FindStringSubmatchIndex(rest)
		if m == nil || (m[1] < len(rest) && !isSpace(rest[m[1]])) {
			if kvStart.MatchString(s) && secretWords.MatchString(s) {
				return Hidden
			}
			return s
		}
		key := rest[m[2]:m[3]]
		if secretName(key) {
			b.WriteString(rest[:m[4]] + Hidden)
		} else {
			b.WriteString(rest[:m[1]])
		}
		rest = rest[m[1]:]
	}
	return b.String() + rest
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
