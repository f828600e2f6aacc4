package httpx

import "fmt"

// Lookup is a GET or HEAD of a small file, read by a front end that parses
// HTTP itself (package plainhttp), for a handler to answer from memory
// without net/http's request and response. The handler either declines it,
// and the front end serves the request as any other, or sets the answer.
type Lookup struct {
	Head        bool         // a HEAD; else a GET
	Path        string       // the request's path, without a query
	IfNoneMatch string       // the first If-None-Match header, "" for none
	Remote      fmt.Stringer // the client's address, for the access log; never nil

	// The answer. Header holds every field but Content-Length, which is
	// the length of Body (sent unless Head) in every answer but a 304.
	Status int
	Header []Field
	Body   []byte
}

// RemoteAddr is the address of an http.Request's client as a Lookup's
// Remote.
type RemoteAddr string

func (a RemoteAddr) String() string { return string(a) }

// Field is a header field of an answer.
type Field struct{ Name, Value string }

// Reset empties l for another request, keeping the room of its header.
func (l *Lookup) Reset() {
	*l = Lookup{Header: l.Header[:0]}
}

// QuickHandler answers lookups from memory.
type QuickHandler interface {
	// ServeLookup sets the answer to l and reports true, as the handler
	// would answer the same request through net/http; or it reports false
	// and leaves l unanswered, for net/http to serve.
	ServeLookup(l *Lookup) bool
}
