// Package smtp holds the pure parts of SMTP that tern's servers and clients
// share: mailbox and path parsing (RFC 5321 §4.1.2 with the RFC 6531
// SMTPUTF8 extensions), replies with enhanced status codes (RFC 3463) as
// typed errors, and trace header formatting (RFC 5321 §4.4).
//
// The package does no I/O and keeps no state; every parser is fuzzed.
package smtp
