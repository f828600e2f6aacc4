// Package sigv4 authenticates S3 requests signed with AWS Signature Version 4
// and decodes their payloads.
//
// It owns everything between an incoming *http.Request and a trustworthy
// payload: the two ways a request carries a signature (the Authorization
// header and presigned query parameters), the canonical request exactly as S3
// defines it, the signing-key derivation, the credential scope and clock
// checks, the aws-chunked payload framings with their chunk and trailer
// signatures, and the payload integrity checks (x-amz-content-sha256,
// x-amz-checksum-*, Content-MD5, declared lengths). Verify does all of it and
// returns a Request whose Body yields the decoded payload and fails, before
// the consumer sees the last byte, if any check does not hold.
//
// It knows nothing of buckets, keys or S3 operations, and it never writes a
// response: failures are *Error values carrying the S3 error code and HTTP
// status for the caller to render.
//
// # Choices where S3 and its clients disagree
//
// A request with header authentication and no x-amz-content-sha256 header
// (curl's --aws-sigv4 before 8.x, and so Nix's S3 store from 2.33) is
// verified with the SHA-256 of the empty string as its payload hash, which is
// what those clients sign, and its body is then treated as unsigned: it is
// not compared with that hash. AWS itself would reject such an upload;
// reference servers accept it.
//
// The canonical URI and query string are computed from the decoded path and
// parameters with S3's strict encoding. When the client sent them in a
// different but equivalent form (lower-case percent escapes, an unescaped
// reserved character) and signed what it sent, that form is accepted too:
// both describe the same decoded path and parameters the caller acts on.
//
// Every chunk is hashed as it streams, so the bytes of a chunk reach the
// consumer before its signature has been checked. The final byte of the
// payload is withheld until every check has passed, so a consumer that stops
// at the declared length, and one that reads to io.EOF, both see the failure;
// any consumer must treat an error from Body as "discard what was read".
package sigv4
