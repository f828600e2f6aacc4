package nixhttp

// NoQuick makes h answer every request through ServeHTTP's own path, for
// tests that compare it with ServeLookup's.
func NoQuick(h *Handler) *Handler {
	h.noQuick = true
	return h
}
