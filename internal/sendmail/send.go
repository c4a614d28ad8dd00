package sendmail

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/queue"
	"github.com/tern-mail/tern/internal/store"
)

// Enqueuer is the queue door (internal/queue.Queue).
type Enqueuer interface {
	Enqueue(ctx context.Context, m *queue.Message) (int64, error)
}

// BlobStore writes message files (internal/store.Store).
type BlobStore interface {
	NewBlob() (*store.BlobWriter, error)
	DiscardBlob(ctx context.Context, id string)
}

// Options is the environment of one sendmail run.
type Options struct {
	Queue Enqueuer
	Blobs BlobStore
	// DefaultFrom is the sender when -f is not given (e.g. the local
	// user at the server's primary domain).
	DefaultFrom string
	Hostname    string
	AccountID   int64
	MaxSize     int64 // default 50 MiB
	Now         func() time.Time
}

// ErrNoRecipients: -t found no recipient in the message.
var ErrNoRecipients = errors.New("sendmail: no recipients")

// Send reads the message from r, completes its header (From, Date,
// Message-ID), removes Bcc, and queues it. It returns the queue id.
func Send(ctx context.Context, o Options, a *Args, r io.Reader) (int64, error) {
	if o.MaxSize <= 0 {
		o.MaxSize = 50 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	raw, err := readMessage(r, a.IgnoreDots, o.MaxSize)
	if err != nil {
		return 0, err
	}
	hdr, body := splitHeader(raw)
	fields := parseFields(hdr)
	rcpts := append([]string(nil), a.Recipients...)
	if a.ExtractRecipients {
		for _, name := range []string{"to", "cc", "bcc"} {
			for _, f := range fields {
				if f.lname == name {
					rcpts = append(rcpts, addresses(f.value)...)
				}
			}
		}
	}
	rcpts = dedupe(rcpts)
	if len(rcpts) == 0 {
		return 0, ErrNoRecipients
	}
	from := a.From
	if from == "" {
		from = o.DefaultFrom
	}
	out := rebuildHeader(fields, from, a.FullName, o)
	if a.NullSender {
		// The header still names the local user; only the
		// envelope is empty, so no bounce can come back.
		from = ""
	}
	out = append(out, body...)

	w, err := o.Blobs.NewBlob()
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(out); err != nil {
		w.Abort()
		return 0, err
	}
	blob, err := w.Commit()
	if err != nil {
		return 0, err
	}
	m := &queue.Message{AccountID: o.AccountID, From: from, Blob: blob, EnvID: a.EnvID, Ret: a.Ret}
	for _, rc := range rcpts {
		m.Recipients = append(m.Recipients, queue.Recipient{Address: rc, Notify: a.Notify})
	}
	id, err := o.Queue.Enqueue(ctx, m)
	// The queue entry holds its own reference; drop the writer's.
	o.Blobs.DiscardBlob(ctx, blob.ID)
	return id, err
}

// readMessage reads to EOF, or (without -i) to a line holding one dot.
// Line endings become CRLF.
func readMessage(r io.Reader, ignoreDots bool, max int64) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, max+1))
	var out bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			t := strings.TrimRight(line, "\r\n")
			if !ignoreDots && t == "." {
				break
			}
			out.WriteString(t)
			out.WriteString("\r\n")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(out.Len()) > max {
		return nil, fmt.Errorf("sendmail: message larger than %d bytes", max)
	}
	return out.Bytes(), nil
}

func splitHeader(raw []byte) (hdr, body []byte) {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i+2], raw[i+2:]
	}
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return nil, raw
	}
	return raw, []byte("\r\n")
}

type field struct {
	lname string
	raw   string // the whole field, folded as written, with CRLF
	value string // unfolded value
}

func parseFields(hdr []byte) []field {
	var fs []field
	for _, line := range strings.SplitAfter(string(hdr), "\r\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fs) > 0 {
			fs[len(fs)-1].raw += line
			fs[len(fs)-1].value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue // not a header field: dropped
		}
		fs = append(fs, field{lname: strings.ToLower(strings.TrimSpace(name)), raw: line, value: strings.TrimSpace(value)})
	}
	return fs
}

// addresses parses an address list leniently.
func addresses(v string) []string {
	if list, err := (&mail.AddressParser{WordDecoder: &mime.WordDecoder{}}).ParseList(v); err == nil {
		var out []string
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if i := strings.LastIndexByte(p, '<'); i >= 0 {
			p = strings.TrimSuffix(p[i+1:], ">")
		}
		if strings.Contains(p, "@") {
			out = append(out, p)
		}
	}
	return out
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range in {
		k := strings.ToLower(a)
		if a != "" && !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// rebuildHeader drops Bcc (RFC 5322 §3.6.3) and adds From, Date and
// Message-ID when missing (RFC 5322 §3.6 requires From and Date).
func rebuildHeader(fs []field, from, fullName string, o Options) []byte {
	var b bytes.Buffer
	has := map[string]bool{}
	for _, f := range fs {
		has[f.lname] = true
		if f.lname == "bcc" {
			continue
		}
		b.WriteString(f.raw)
	}
	if !has["from"] && from != "" {
		a := mail.Address{Name: fullName, Address: from}
		b.WriteString("From: " + a.String() + "\r\n")
	}
	if !has["date"] {
		b.WriteString("Date: " + o.Now().Format(time.RFC1123Z) + "\r\n")
	}
	if !has["message-id"] {
		var rnd [12]byte
		rand.Read(rnd[:])
		host := o.Hostname
		if host == "" {
			host = "localhost"
		}
		b.WriteString("Message-ID: <" + hex.EncodeToString(rnd[:]) + "@" + host + ">\r\n")
	}
	return b.Bytes()
}
