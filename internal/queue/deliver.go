package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/dns"
	"github.com/tern-mail/tern/internal/mtasts"
	"github.com/tern-mail/tern/internal/store"
)

// outcome is what one attempt did for one recipient.
type outcome struct {
	ok       bool
	perm     bool // permanent failure (5xx)
	code     int
	enhanced string
	text     string
	remote   string // host that answered
	relayed  bool   // handed to a server without DSN support (RFC 3461 §5.2.2)
	local    bool
}

func temp(enh, format string, args ...any) outcome {
	return outcome{code: 451, enhanced: enh, text: fmt.Sprintf(format, args...)}
}

func perm(code int, enh, format string, args ...any) outcome {
	return outcome{perm: true, code: code, enhanced: enh, text: fmt.Sprintf(format, args...)}
}

func fromReply(r reply, host string) outcome {
	o := outcome{code: r.Code, enhanced: r.Enhanced, text: strings.ReplaceAll(r.Text, "\n", " "), remote: host}
	o.ok = r.Code/100 == 2
	o.perm = r.Code/100 == 5
	if o.enhanced == "" && !o.ok {
		o.enhanced = fmt.Sprintf("%d.0.0", r.Code/100)
	}
	return o
}

func fill(n int, o outcome) []outcome {
	out := make([]outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}

// domainOf returns the lower-cased domain of an address.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}

// attempt tries every pending recipient of one entry once, grouped by
// domain, and records the outcome.
func (q *Queue) attempt(ctx context.Context, e *store.QueueEntry) {
	log := q.log.With("queue", e.ID)
	groups := map[string][]int{}
	var domains []string
	for i, r := range e.Recipients {
		if r.Status != store.QueuePending {
			continue
		}
		d := domainOf(r.Address)
		if groups[d] == nil {
			domains = append(domains, d)
		}
		groups[d] = append(groups[d], i)
	}
	sort.Strings(domains)
	b := &body{q: q, id: e.Blob.ID, size: e.Blob.Size}
	// Signed once per message, and only when some transaction is about
	// to start: the signatures are kept with the entry (QueueUpdate in
	// finish), so a retry sends them again without signing.
	sign := sync.OnceValue(func() []byte {
		if len(e.DKIM) == 0 {
			e.DKIM = q.sign(e, b, log)
		}
		return e.DKIM
	})
	results := map[int]outcome{}
	for _, d := range domains {
		idx := groups[d]
		var outs []outcome
		if local, err := q.isLocal(ctx, d); err != nil {
			outs = fill(len(idx), temp("4.3.0", "local lookup: %v", err))
		} else if local {
			outs = q.deliverLocal(ctx, e, idx)
		} else {
			outs = q.deliverRemote(ctx, e, d, idx, b, sign)
		}
		for k, i := range idx {
			results[i] = outs[k]
		}
	}
	q.finish(ctx, e, results, log)
}

// smallMessage: messages up to this size are read once per attempt and
// kept in memory for signing and sending.
const smallMessage = 1 << 20

// body hands out the message bytes for one attempt.
type body struct {
	q      *Queue
	id     string
	size   int64
	data   []byte
	loaded bool
}

// tlsOptional reports a "TLS-Required: No" header field (RFC 8689 §5).
func (b *body) tlsOptional() bool {
	r, done, err := b.open()
	if err != nil {
		return false
	}
	defer done()
	hdr, _ := readHeader(r, 256<<10)
	for _, line := range strings.Split(unfold(string(hdr)), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "TLS-Required") && strings.EqualFold(strings.TrimSpace(value), "No") {
			return true
		}
	}
	return false
}

// open returns a reader over the whole message and its closer.
func (b *body) open() (io.Reader, func(), error) {
	if b.size <= smallMessage {
		if !b.loaded {
			f, err := b.q.st.OpenBlob(b.id)
			if err != nil {
				return nil, nil, err
			}
			b.data, err = io.ReadAll(f)
			f.Close()
			if err != nil {
				return nil, nil, err
			}
			b.loaded = true
		}
		return bytes.NewReader(b.data), func() {}, nil
	}
	f, err := b.q.st.OpenBlob(b.id)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// sign computes the DKIM signatures for the From header's domain (the one
// DMARC aligns with), falling back on the envelope sender's domain. A
// message in memory is signed where it lies, without a copy.
func (q *Queue) sign(e *store.QueueEntry, b *body, log interface{ Warn(string, ...any) }) []byte {
	if q.cfg.DKIM == nil {
		return nil
	}
	r, done, err := b.open()
	if err != nil {
		log.Warn("dkim: open message", "err", err)
		return nil
	}
	var hdr []byte
	if b.loaded {
		if i := headerEnd(b.data); i >= 0 {
			hdr = b.data[:i]
		} else {
			hdr = b.data
		}
	} else {
		hdr, _ = readHeader(r, 256<<10)
	}
	done()
	for _, d := range []string{fromHeaderDomain(hdr), domainOf(e.From)} {
		if d == "" {
			continue
		}
		var sig []byte
		if b.loaded {
			sig, err = q.cfg.DKIM.SignBytes(d, b.data)
		} else {
			var r io.Reader
			if r, done, err = b.open(); err != nil {
				return nil
			}
			sig, err = q.cfg.DKIM.Sign(d, r)
			done()
		}
		if err == nil {
			return sig
		}
		log.Warn("dkim: not signed", "domain", d, "err", err)
	}
	return nil
}

// isLocal caches IsLocalDomain for a few seconds.
func (q *Queue) isLocal(ctx context.Context, domain string) (bool, error) {
	now := q.cfg.Now()
	q.mu.Lock()
	c, ok := q.local[domain]
	q.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.local, nil
	}
	local, err := q.st.IsLocalDomain(ctx, domain)
	if err != nil {
		return false, err
	}
	q.mu.Lock()
	if len(q.local) > 10000 {
		clear(q.local)
	}
	q.local[domain] = localCache{local: local, until: now.Add(5 * time.Second)}
	q.mu.Unlock()
	return local, nil
}

type localCache struct {
	local bool
	until time.Time
}

// fromHeaderDomain extracts the domain of the first From address.
func fromHeaderDomain(hdr []byte) string {
	for _, line := range strings.Split(unfold(string(hdr)), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "From") {
			continue
		}
		v := value
		if i := strings.LastIndexByte(v, '<'); i >= 0 {
			if j := strings.IndexByte(v[i:], '>'); j > 0 {
				v = v[i+1 : i+j]
			}
		}
		return domainOf(strings.TrimSpace(v))
	}
	return ""
}

func unfold(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n ", " ")
	return strings.ReplaceAll(s, "\n\t", " ")
}

// tlsNeed is what a connection must offer before a message goes over it.
type tlsNeed struct {
	verify     bool // TLS with a certificate valid for the host name
	requireTLS bool // RFC 8689: verified TLS and the REQUIRETLS extension
}

// route returns the hosts to try for a domain and what TLS they must
// offer (MTA-STS enforce, REQUIRETLS). A returned outcome is a failure
// for every recipient of the domain.
func (q *Queue) route(ctx context.Context, domain string, requireTLS, tlsOptional bool) ([]dns.MX, tlsNeed, *outcome) {
	need := tlsNeed{verify: requireTLS, requireTLS: requireTLS}
	if sh := q.cfg.Smarthost; sh != nil {
		// The administrator named this host; it was not found in DNS.
		need.verify = need.verify || sh.TLS == TLSStartTLS || sh.TLS == TLSImplicit
		return []dns.MX{{Host: sh.Host}}, need, nil
	}
	hosts, secure, err := q.cfg.Resolver.MailHostsDNSSEC(ctx, domain)
	switch {
	case errors.Is(err, dns.ErrNullMX):
		o := perm(556, "5.1.10", "domain %s does not accept mail (null MX)", domain) // RFC 7505 §4.2
		return nil, need, &o
	case errors.Is(err, dns.ErrNotFound):
		o := perm(550, "5.1.2", "domain %s has no mail server", domain)
		return nil, need, &o
	case err != nil:
		o := temp("4.4.3", "DNS lookup of %s failed: %v", domain, err)
		return nil, need, &o
	}
	// RFC 8689 §5: "TLS-Required: No" asks to ignore TLS policies.
	var p *mtasts.Policy
	if q.cfg.MTASTS != nil && !tlsOptional {
		if p, err = q.cfg.MTASTS.Policy(ctx, domain); err != nil {
			q.log.Warn("mta-sts policy fetch failed; treating as none (RFC 8461 §5)", "domain", domain, "err", err)
		}
	}
	var listed []dns.MX
	if p != nil && (p.Mode == mtasts.ModeEnforce || p.Mode == mtasts.ModeTesting) {
		for _, h := range hosts {
			if p.Matches(h.Host) {
				listed = append(listed, h)
			}
		}
	}
	if p != nil && p.Mode == mtasts.ModeEnforce {
		// RFC 8461 §4.2: only MX hosts matching the policy, over TLS
		// with a certificate valid for the MX host name.
		if len(listed) == 0 {
			o := temp(tlsEnhanced(requireTLS), "no MX host of %s matches its MTA-STS policy", domain)
			return nil, need, &o
		}
		hosts, need.verify = listed, true
	}
	if requireTLS && !secure {
		// RFC 8689 §4.2.1 step 1: the MX hosts must come from a
		// DNSSEC-validated lookup or an MTA-STS policy (enforce or
		// testing) naming them. Otherwise the message waits.
		if len(listed) == 0 {
			o := temp("4.7.10", "REQUIRETLS: the MX hosts of %s are neither DNSSEC-validated nor listed in an MTA-STS policy", domain)
			return nil, need, &o
		}
		hosts = listed
	}
	return hosts, need, nil
}

// tlsEnhanced is the status of a delivery held for want of TLS: RFC 8689
// §4.2.1 gives X.7.10 (encryption needed) for REQUIRETLS, RFC 8461 none.
func tlsEnhanced(requireTLS bool) string {
	if requireTLS {
		return "4.7.10"
	}
	return "4.7.5"
}

// deliverRemote sends to one domain's recipients in one transaction,
// reusing an idle connection when there is one.
func (q *Queue) deliverRemote(ctx context.Context, e *store.QueueEntry, domain string, idx []int, b *body, sig func() []byte) []outcome {
	key := domain
	if q.cfg.Smarthost != nil {
		key = "smarthost"
	}
	d := q.dest(key)
	if down, why := d.down(q.cfg.Now()); down {
		return fill(len(idx), temp("4.4.1", "%s", why))
	}
	// Sign before taking a connection slot: the RSA signature is the
	// costliest step and needs no connection, so the workers sign in
	// parallel on every core while the slots carry transactions.
	sig()
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return fill(len(idx), temp("4.3.2", "shutting down"))
	}
	defer func() { <-d.sem }()

	// A cached connection was set up under the same policy moments ago.
	// A REQUIRETLS message gets a connection of its own, opened after the
	// checks of RFC 8689 §4.2.1.
	for !e.RequireTLS {
		c := d.takeIdle()
		if c == nil {
			break
		}
		stop := c.watch(ctx)
		outs, err := q.transact(ctx, c, e, idx, b, sig)
		stop()
		if err == nil {
			d.putIdle(c, q.cfg.Now(), q.cfg.PerDestination)
			return outs
		}
		c.close()
		if outs != nil {
			return outs // the server answered something: no blind resend
		}
	}

	hosts, need, fail := q.route(ctx, domain, e.RequireTLS, !e.RequireTLS && b.tlsOptional())
	if fail != nil {
		return fill(len(idx), *fail)
	}
	last := temp("4.4.1", "no mail server of %s reachable", domain)
	connected := false
	for _, h := range hosts {
		ips, err := q.cfg.Resolver.LookupIP(ctx, h.Host)
		if q.cfg.Smarthost != nil {
			ips, err = q.smarthostIPs(ctx)
		}
		if err != nil {
			last = temp("4.4.3", "address of %s: %v", h.Host, err)
			continue
		}
		for _, ip := range ips {
			c, err := q.connect(ctx, h.Host, ip, need)
			if err != nil {
				last = connectOutcome(h.Host, err)
				connected = connected || last.code >= 400 && last.remote != ""
				q.log.Debug("connect failed", "host", h.Host, "ip", ip, "err", err)
				continue
			}
			connected = true
			stop := c.watch(ctx)
			outs, err := q.transact(ctx, c, e, idx, b, sig)
			stop()
			if err != nil {
				c.close()
				if outs != nil {
					return outs
				}
				last = temp("4.4.2", "%s: %v", h.Host, err)
				continue
			}
			d.putIdle(c, q.cfg.Now(), q.cfg.PerDestination)
			return outs
		}
	}
	if !connected {
		d.markDown(q.cfg.Now().Add(q.cfg.DownTTL), last.text)
	}
	if e.RequireTLS && last.enhanced == "5.7.30" {
		// RFC 8689 §4.2.1: no MX offers REQUIRETLS; the message is
		// returned. (Without verified TLS it waits: 4.7.10, and 5.7.10
		// when it expires.)
		last.perm = true
	}
	return fill(len(idx), last)
}

func (q *Queue) smarthostIPs(ctx context.Context) ([]net.IP, error) {
	if ip := net.ParseIP(q.cfg.Smarthost.Host); ip != nil {
		return []net.IP{ip}, nil
	}
	return q.cfg.Resolver.LookupIP(ctx, q.cfg.Smarthost.Host)
}

// dialer returns the configured dialer, without its source address when
// that is of the other IP family than the destination.
func (q *Queue) dialer(ip net.IP) *net.Dialer {
	d := q.cfg.Dialer
	if la, ok := d.LocalAddr.(*net.TCPAddr); ok && (la.IP.To4() == nil) != (ip.To4() == nil) {
		c := *d
		c.LocalAddr = nil
		return &c
	}
	return d
}

// tlsRequiredError: a host could not give the verified TLS required
// (enhanced 4.7.5 or 4.7.10), or no REQUIRETLS after it (5.7.30).
type tlsRequiredError struct{ enhanced, msg string }

func (e *tlsRequiredError) Error() string { return e.msg }

func connectOutcome(host string, err error) outcome {
	var te *tlsRequiredError
	if errors.As(err, &te) {
		// Not permanent yet: another MX may do better.
		code := map[bool]int{true: 550, false: 451}[te.enhanced[0] == '5']
		return outcome{code: code, enhanced: te.enhanced, text: te.msg, remote: host}
	}
	var se *smtpError
	if errors.As(err, &se) {
		o := fromReply(se.r, host)
		o.perm = false // another MX or a later attempt may do better
		return o
	}
	return temp("4.4.1", "%s: %v", host, err)
}

// connect dials one address, says EHLO, upgrades to TLS and logs in to a
// smarthost. With need.verify, a connection without a verified
// certificate for host is refused: the message is never sent in clear.
func (q *Queue) connect(ctx context.Context, host string, ip net.IP, need tlsNeed) (*client, error) {
	verify := need.verify
	port := q.cfg.Port
	mode := TLSOpportunistic
	if sh := q.cfg.Smarthost; sh != nil {
		port, mode = sh.Port, sh.TLS
		if port == 0 {
			port = map[bool]int{true: 465, false: 587}[mode == TLSImplicit]
		}
	}
	tcfg := q.cfg.TLS.Clone()
	tcfg.ServerName = host
	tcfg.InsecureSkipVerify = !verify // RFC 7435 opportunistic security
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	for plainRetry := false; ; plainRetry = true {
		conn, err := q.dialer(ip).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		// Shutdown interrupts a server that stalls the greeting or TLS.
		defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
		if mode == TLSImplicit {
			tc := tls.Client(conn, tcfg)
			tc.SetDeadline(time.Now().Add(cmdTimeout))
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			conn = tc
		}
		c, err := newClient(conn, host, q.cfg.Hostname)
		if err != nil {
			conn.Close()
			return nil, err
		}
		c.tls, c.verified = mode == TLSImplicit, mode == TLSImplicit
		if !c.tls && mode != TLSNone && c.has("STARTTLS") && !plainRetry {
			if err := c.startTLS(tcfg, q.cfg.Hostname); err != nil {
				c.close()
				if verify {
					return nil, &tlsRequiredError{tlsEnhanced(need.requireTLS), fmt.Sprintf("TLS with %s failed: %v", host, err)}
				}
				q.log.Info("STARTTLS failed, retrying in clear (opportunistic)", "host", host, "err", err)
				continue
			}
		}
		if verify && !c.verified {
			c.close()
			return nil, &tlsRequiredError{tlsEnhanced(need.requireTLS), host + " offers no verified TLS and policy requires it"}
		}
		if need.requireTLS && !c.has("REQUIRETLS") {
			// RFC 8689 §4.2.1 step 4: the extension must be offered
			// after STARTTLS; 5.7.30 once no MX offers it.
			c.close()
			return nil, &tlsRequiredError{"5.7.30", "REQUIRETLS: " + host + " does not offer REQUIRETLS"}
		}
		if sh := q.cfg.Smarthost; sh != nil && sh.Username != "" {
			if err := c.auth(sh.Username, sh.Password); err != nil {
				c.close()
				return nil, err
			}
		}
		return c, nil
	}
}

// transact runs one SMTP transaction for the recipients idx. A nil
// outcome slice with an error means nothing was decided (connection
// lost before any reply): the caller may try another connection.
func (q *Queue) transact(ctx context.Context, c *client, e *store.QueueEntry, idx []int, b *body, sig func() []byte) ([]outcome, error) {
	env, fail := q.envelope(c, e, idx)
	if fail != nil {
		return fill(len(idx), *fail), nil
	}
	signature := sig()
	r, done, err := b.open()
	if err != nil {
		return fill(len(idx), temp("4.3.0", "message file: %v", err)), nil
	}
	defer done()
	res, err := c.send(ctx, env, func(w *bufio.Writer) error {
		d := &dotStuffer{w: w}
		d.write(signature)
		if b.loaded {
			d.write(b.data) // no copy of a message in memory
		} else if err := d.copy(r); err != nil {
			return err
		}
		return d.end()
	})
	if err != nil {
		if res.Mail.Code == 0 {
			return nil, err
		}
		return fill(len(idx), temp("4.4.2", "%s: connection lost: %v", c.host, err)), err
	}
	outs := make([]outcome, len(idx))
	complete := res.Data.Code == 250
	for k := range idx {
		switch {
		case res.Mail.Code != 250:
			outs[k] = fromReply(res.Mail, c.host)
		case res.Rcpts[k].Code/100 != 2:
			outs[k] = fromReply(res.Rcpts[k], c.host)
		case res.Data.Code == 0:
			outs[k] = temp("4.4.2", "%s: no reply to DATA", c.host)
		default:
			outs[k] = fromReply(res.Data, c.host)
			outs[k].relayed = outs[k].ok && !c.has("DSN")
		}
	}
	if !complete {
		if err := c.reset(); err != nil {
			return outs, err
		}
	}
	return outs, nil
}

// envelope builds MAIL and RCPT parameters for what the server offers.
func (q *Queue) envelope(c *client, e *store.QueueEntry, idx []int) (*envelope, *outcome) {
	env := &envelope{From: e.From}
	var mp strings.Builder
	if c.has("SIZE") {
		fmt.Fprintf(&mp, " SIZE=%d", e.Blob.Size+1024)
	}
	if c.has("8BITMIME") {
		mp.WriteString(" BODY=8BITMIME")
	}
	utf8 := !isASCII(e.From)
	for _, i := range idx {
		utf8 = utf8 || !isASCII(e.Recipients[i].Address)
	}
	if utf8 {
		if !c.has("SMTPUTF8") {
			o := perm(553, "5.6.7", "%s does not support SMTPUTF8 (RFC 6531)", c.host)
			return nil, &o
		}
		mp.WriteString(" SMTPUTF8")
	}
	dsn := c.has("DSN")
	if dsn {
		if e.Ret != "" {
			mp.WriteString(" RET=" + e.Ret)
		}
		if e.EnvID != "" {
			mp.WriteString(" ENVID=" + xtext(e.EnvID))
		}
	}
	if e.RequireTLS {
		// RFC 8689 §4.2.1: only to servers offering REQUIRETLS over TLS.
		if !c.has("REQUIRETLS") || !c.verified {
			o := perm(550, "5.7.30", "REQUIRETLS: %s does not offer REQUIRETLS over verified TLS", c.host)
			return nil, &o
		}
		mp.WriteString(" REQUIRETLS")
	}
	env.MailParams = mp.String()
	for _, i := range idx {
		r := e.Recipients[i]
		env.Rcpts = append(env.Rcpts, r.Address)
		var rp strings.Builder
		if dsn {
			// RFC 3461 §5.2.1: pass NOTIFY and ORCPT on.
			if len(r.Notify) > 0 {
				rp.WriteString(" NOTIFY=" + strings.Join(r.Notify, ","))
			}
			orcpt := r.ORcpt
			if orcpt == "" {
				orcpt = "rfc822;" + r.Address
			}
			if typ, addr, ok := strings.Cut(orcpt, ";"); ok {
				rp.WriteString(" ORCPT=" + typ + ";" + xtext(addr))
			}
		}
		env.RcptParams = append(env.RcptParams, rp.String())
	}
	return env, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// xtext encodes a DSN parameter value (RFC 3461 §4).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < '!' || ch > '~' || ch == '+' || ch == '=' {
			fmt.Fprintf(&b, "+%02X", ch)
		} else {
			b.WriteByte(ch)
		}
	}
	return b.String()
}
