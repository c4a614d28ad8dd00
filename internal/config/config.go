// Package config reads tern.toml. Parsing is strict: an unknown key or a
// value of the wrong type is an error that names the key and the line.
// Relative paths in the file are relative to the data directory.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the whole of tern.toml.
type Config struct {
	// Hostname is the server's public name: SMTP greeting, Received
	// headers, the TLS certificate.
	Hostname string `toml:"hostname"`
	// Data is the data directory; default: the directory of tern.toml.
	Data string `toml:"data"`

	Log        Log        `toml:"log"`
	TLS        TLS        `toml:"tls"`
	SMTP       SMTP       `toml:"smtp"`
	Submission Submission `toml:"submission"`
	IMAP       Listeners  `toml:"imap"`
	POP3       POP3       `toml:"pop3"`
	Queue      Queue      `toml:"queue"`
	HTTP       HTTP       `toml:"http"`

	// Dev relaxes rules that only make sense on loopback: plaintext
	// authentication without TLS. Set by `tern dev`, never in a file.
	Dev bool `toml:"-"`
}

// Log configures logging.
type Log struct {
	Format string `toml:"format"` // "text" (default) or "json"
	Level  string `toml:"level"`  // debug, info (default), warn, error
}

// TLS names the certificate files (PEM).
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// Listeners are the plain (STARTTLS-capable) and implicit-TLS addresses of
// one protocol.
type Listeners struct {
	Listen    []string `toml:"listen"`
	ListenTLS []string `toml:"listen_tls"`
}

// SMTP configures inbound mail (port 25).
type SMTP struct {
	Listen          []string `toml:"listen"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	MaxConnsPerIP   int      `toml:"max_conns_per_ip"`
}

// Submission configures authenticated sending (587, 465).
type Submission struct {
	Listen        []string `toml:"listen"`
	ListenTLS     []string `toml:"listen_tls"`
	MaxRecipients int      `toml:"max_recipients"`
	MaxPerDay     int      `toml:"max_messages_per_day"`
}

// POP3 configures the POP3 listeners.
type POP3 struct {
	Listen         []string `toml:"listen"`
	ListenTLS      []string `toml:"listen_tls"`
	MarkSeenOnRetr *bool    `toml:"mark_seen_on_retr"`
}

// HTTP configures the web endpoints: MTA-STS policy, autoconfig, health.
type HTTP struct {
	Listen     []string `toml:"listen"`
	ListenTLS  []string `toml:"listen_tls"`
	MTASTSMode string   `toml:"mta_sts_mode"` // testing (default), enforce, none
}

// Queue configures outbound delivery.
type Queue struct {
	Lifetime     Duration  `toml:"lifetime"`      // default 120h
	DelayWarning Duration  `toml:"delay_warning"` // default 4h
	Resolver     string    `toml:"resolver"`      // host:port of a DNS server; default the system's
	Port         int       `toml:"port"`          // destination port, default 25
	Smarthost    Smarthost `toml:"smarthost"`
}

// Smarthost relays all outbound mail through one server.
type Smarthost struct {
	Host     string `toml:"host"`
	Port     int    `toml:"port"`
	TLS      string `toml:"tls"` // "starttls" (default), "implicit", "none"
	Username string `toml:"username"`
	Password string `toml:"password"`
}

// Duration is a time.Duration written as "4h", "30m".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q (use e.g. 4h, 30m)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Data == "" {
		c.Data = filepath.Dir(path)
	}
	if abs, err := filepath.Abs(c.Data); err == nil {
		c.Data = abs
	}
	return c, nil
}

// Parse decodes and validates config text.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, describe(err)
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// describe turns go-toml's errors into one line naming key and line.
func describe(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		var msgs []string
		for _, e := range strict.Errors {
			row, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q", row, strings.Join(e.Key(), ".")))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if key != "" {
			return fmt.Errorf("line %d: key %q: %s", row, key, de.Error())
		}
		return fmt.Errorf("line %d: %s", row, de.Error())
	}
	return err
}

func (c *Config) setDefaults() {
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.SMTP.MaxMessageBytes == 0 {
		c.SMTP.MaxMessageBytes = 50 << 20
	}
	if c.SMTP.MaxRecipients == 0 {
		c.SMTP.MaxRecipients = 100
	}
	if c.SMTP.MaxConnsPerIP == 0 {
		c.SMTP.MaxConnsPerIP = 20
	}
	if c.Submission.MaxRecipients == 0 {
		c.Submission.MaxRecipients = 100
	}
	if c.Submission.MaxPerDay == 0 {
		c.Submission.MaxPerDay = 1000
	}
	if c.Queue.Lifetime.Duration == 0 {
		c.Queue.Lifetime.Duration = 5 * 24 * time.Hour
	}
	if c.Queue.DelayWarning.Duration == 0 {
		c.Queue.DelayWarning.Duration = 4 * time.Hour
	}
	if c.Queue.Port == 0 {
		c.Queue.Port = 25
	}
}

func (c *Config) validate() error {
	if c.Hostname == "" {
		return errors.New(`key "hostname": required`)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf(`key "log.format": %q is not "text" or "json"`, c.Log.Format)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf(`key "log.level": %q is not debug, info, warn or error`, c.Log.Level)
	}
	lists := map[string][]string{
		"smtp.listen": c.SMTP.Listen, "submission.listen": c.Submission.Listen, "submission.listen_tls": c.Submission.ListenTLS,
		"imap.listen": c.IMAP.Listen, "imap.listen_tls": c.IMAP.ListenTLS, "pop3.listen": c.POP3.Listen, "pop3.listen_tls": c.POP3.ListenTLS,
		"http.listen": c.HTTP.Listen, "http.listen_tls": c.HTTP.ListenTLS,
	}
	for key, addrs := range lists {
		for _, a := range addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || !validPort(port) {
				return fmt.Errorf("key %q: bad address %q (want host:port, e.g. 0.0.0.0:25)", key, a)
			}
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New(`keys "tls.cert" and "tls.key" go together`)
	}
	if c.SMTP.MaxMessageBytes < 1024 {
		return errors.New(`key "smtp.max_message_bytes": too small`)
	}
	if c.SMTP.MaxRecipients < 1 || c.Submission.MaxRecipients < 1 {
		return errors.New(`key "max_recipients": must be at least 1`)
	}
	switch c.HTTP.MTASTSMode {
	case "", "testing", "enforce", "none":
	default:
		return fmt.Errorf(`key "http.mta_sts_mode": %q is not testing, enforce or none`, c.HTTP.MTASTSMode)
	}
	switch c.Queue.Smarthost.TLS {
	case "", "starttls", "implicit", "none":
	default:
		return fmt.Errorf(`key "queue.smarthost.tls": %q is not starttls, implicit or none`, c.Queue.Smarthost.TLS)
	}
	if c.Queue.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Queue.Resolver); err != nil {
			return fmt.Errorf(`key "queue.resolver": %q is not host:port`, c.Queue.Resolver)
		}
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n < 65536
}

// Path resolves a path from the config relative to the data directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Data, p)
}

// Flag reads an optional boolean with its default.
func Flag(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}
