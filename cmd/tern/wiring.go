package main

import (
	"crypto/tls"

	"github.com/tern-mail/tern/internal/smtpserver"
)

// startQueue starts outbound delivery. It returns nil until the queue is
// wired: remote recipients then get a temporary failure.
func (s *server) startQueue() (smtpserver.Enqueuer, error) {
	return nil, nil
}

// startPOP3 starts the POP3 listeners.
func (s *server) startPOP3(tlsc *tls.Config) error {
	return nil
}
