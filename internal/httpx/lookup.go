package httpx

import (
	"fmt"
	"sync"
)

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

// lookups keeps Lookups for reuse, with the room of their headers.
var lookups = sync.Pool{New: func() any { return &Lookup{Header: make([]Field, 0, 8)} }}

// NewLookup returns an empty Lookup, reused if one was released.
func NewLookup() *Lookup { return lookups.Get().(*Lookup) }

// Release empties l and keeps it for NewLookup; l must not be used after.
func (l *Lookup) Release() {
	*l = Lookup{Header: l.Header[:0]}
	lookups.Put(l)
}

// QuickHandler answers lookups from memory.
type QuickHandler interface {
	// ServeLookup sets the answer to l and reports true, as the handler
	// would answer the same request through net/http; or it reports false
	// and leaves l unanswered, for net/http to serve.
	ServeLookup(l *Lookup) bool
}
