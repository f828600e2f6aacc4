package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/service"
)

// A login: the login page's form takes a token (read for the private
// caches it covers, admin for the collection page), which the service
// checks and trades for a session. The browser holds the session's secret
// in a cookie that scripts cannot read (HttpOnly), that is sent to this
// site only (SameSite=Strict) and, when larder is reached over HTTPS, only
// over HTTPS (Secure, and the __Host- prefix, which pins it to this host
// and path /). The token itself is never kept, put in a URL or logged.
//
// Every form that changes something is a POST that carries a CSRF token,
// checked before anything else: the login form the value of a cookie set
// with the form (a double submit: a page of another site can neither read
// the cookie nor have it sent), every other form its session's own token.
// A POST whose Origin or Sec-Fetch-Site names another site is refused
// whatever it carries.

// Cookie names; over HTTPS they take the __Host- prefix.
const (
	sessionCookie = "larder_session"
	loginCookie   = "larder_login"
)

// maxForm is the largest form body accepted.
const maxForm = 4 << 10

// cookieName returns the name of a cookie as this server sets it.
func (h *Handler) cookieName(name string) string {
	if h.secure {
		return "__Host-" + name
	}
	return name
}

// setCookie sets a cookie of the dashboard: Path=/, HttpOnly,
// SameSite=Strict, Secure over HTTPS. maxAge < 0 deletes it.
func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode})
}

// cookie returns the value of a cookie of the dashboard, or "".
func (h *Handler) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(h.cookieName(name))
	if err != nil {
		return ""
	}
	return c.Value
}

// loadSession finds the session the request's cookie names. A cookie that
// names none (ended, logged out, forged) is deleted and the request is
// anonymous; only a failure of the store is an error.
func (h *Handler) loadSession(q *request) error {
	secret := h.cookie(q.r, sessionCookie)
	if secret == "" {
		return nil
	}
	sess, err := h.svc.SessionOf(q.r.Context(), secret)
	switch code := service.CodeOf(err); {
	case err == nil:
		q.session, q.secret = &sess, secret
		q.w.Header().Add("Vary", "Cookie")
		return nil
	case code == service.CodeUnauthenticated:
		h.setCookie(q.w, sessionCookie, "", -1)
		return nil
	default:
		return err
	}
}

// login shows the login form (GET) or logs in (POST).
func (h *Handler) login(q *request) {
	q.info.page = "login"
	switch q.r.Method {
	case http.MethodGet, http.MethodHead:
		h.loginForm(q, http.StatusOK, "")
	case http.MethodPost:
		if err := h.doLogin(q); err != nil {
			if status(err) == http.StatusUnauthorized {
				q.info.err = err
				h.log.Warn("login refused", "remote", q.r.RemoteAddr, "reason", h.reason(err))
				h.loginForm(q, http.StatusUnauthorized, service.Message(err))
				return
			}
			h.fail(q, err)
		}
	default:
		q.w.Header().Set("Allow", "GET, HEAD, POST")
		h.fail(q, errMethod)
	}
}

// loginForm renders the login form with the CSRF cookie the browser has,
// or a new one, so that login pages open side by side all work.
func (h *Handler) loginForm(q *request, code int, problem string) {
	token := h.cookie(q.r, loginCookie)
	if _, err := hex.DecodeString(token); err != nil || len(token) != 48 {
		token = hex.EncodeToString(randomBytes(24))
	}
	h.setCookie(q.w, loginCookie, token, 3600)
	h.render(q, code, "login", loginPage{CSRF: token, Next: safeNext(q.r.URL.Query().Get("next")), Problem: problem})
}

// doLogin checks the login form and opens a session.
func (h *Handler) doLogin(q *request) error {
	form, err := h.readForm(q)
	if err != nil {
		return err
	}
	want := h.cookie(q.r, loginCookie)
	if !sameToken(form.Get("csrf"), want) {
		return forbidden("the form has expired or was not sent from this site; reload the page and log in again")
	}
	secret, sess, err := h.svc.Login(q.r.Context(), strings.TrimSpace(form.Get("token")))
	if err != nil {
		return err
	}
	h.setCookie(q.w, loginCookie, "", -1)
	h.setCookie(q.w, sessionCookie, secret, int(time.Until(sess.ExpiresAt)/time.Second))
	http.Redirect(q.w, q.r, safeNext(form.Get("next")), http.StatusSeeOther)
	return nil
}

// logout ends the request's session (POST only).
func (h *Handler) logout(q *request) {
	q.info.page = "logout"
	if q.r.Method != http.MethodPost {
		q.w.Header().Set("Allow", "POST")
		h.fail(q, errMethod)
		return
	}
	form, err := h.readForm(q)
	if err != nil {
		h.fail(q, err)
		return
	}
	if q.session == nil {
		// Nothing to end: the session was over already.
		http.Redirect(q.w, q.r, "/", http.StatusSeeOther)
		return
	}
	if !sameToken(form.Get("csrf"), q.session.CSRF) {
		h.fail(q, forbidden("the form was not sent from this site; reload the page and try again"))
		return
	}
	if err := h.svc.Logout(q.r.Context(), q.secret); err != nil {
		h.fail(q, err)
		return
	}
	h.setCookie(q.w, sessionCookie, "", -1)
	http.Redirect(q.w, q.r, "/", http.StatusSeeOther)
}

// readForm reads a POSTed form of at most maxForm bytes, after checking
// that it comes from a page of this site.
func (h *Handler) readForm(q *request) (url.Values, error) {
	if err := h.sameOrigin(q.r); err != nil {
		return nil, err
	}
	mt, _, err := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, &webError{http.StatusUnsupportedMediaType, "send the form as application/x-www-form-urlencoded"}
	}
	q.r.Body = http.MaxBytesReader(q.w, q.r.Body, maxForm)
	if err := q.r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &webError{http.StatusRequestEntityTooLarge, "the form is too large"}
		}
		return nil, badRequest("the form cannot be read")
	}
	return q.r.PostForm, nil
}

// sameOrigin refuses a request that a page of another site sent, as the
// browser says in Sec-Fetch-Site or Origin. Clients that send neither are
// left to the CSRF token.
func (h *Handler) sameOrigin(r *http.Request) error {
	refused := forbidden("the form was sent from another site")
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return refused
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if origin == scheme+"://"+r.Host || h.origin != "" && origin == h.origin {
		return nil
	}
	return refused
}

// sameToken reports whether a CSRF token sent equals the expected one, in
// constant time; an empty one equals nothing.
func sameToken(sent, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(sent), []byte(want)) == 1
}

// safeNext returns where to go after logging in: next if it is a page of
// the dashboard, else the landing page. It never leads off the site.
func safeNext(next string) string {
	if next == "/" || strings.HasPrefix(next, Prefix) && !strings.ContainsAny(next, "\\\r\n\t") && len(next) < 512 {
		return next
	}
	return "/"
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}
