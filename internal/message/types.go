// Package message parses a message once, at delivery, into what the access
// protocols need later: the IMAP envelope, the body structure with the byte
// offsets of every part, and a short text preview. DecodedText,
// DecodeHeaderValue and HTMLText turn stored parts and fields into text for
// search and the webmail. Parsing is lenient: any byte sequence yields a
// valid structure, so mail is never rejected for MIME oddities; it streams,
// with caps on header bytes, nesting, parts and addresses, so memory stays
// bounded whatever the input. The package does no I/O beyond the reader it
// is given.
package message

// Parsed is everything stored about a message besides its bytes. It is
// serialised to JSON by the store, so field names are part of the on-disk
// format: add fields, never rename them.
type Parsed struct {
	Envelope  Envelope `json:"env"`
	Structure *Part    `json:"body"`
	// Preview is up to 256 characters of the first text part, decoded,
	// with white space folded (RFC 8970 PREVIEW; webmail lists).
	Preview string `json:"preview,omitempty"`
	// HasAttachment is true when some part is an attachment.
	HasAttachment bool `json:"att,omitempty"`
}

// Envelope holds the RFC 9051 §7.5.2 ENVELOPE fields. Strings are the raw
// header values (unfolded, not decoded), as IMAP requires; empty means NIL.
type Envelope struct {
	Date      string    `json:"date,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	From      []Address `json:"from,omitempty"`
	Sender    []Address `json:"sender,omitempty"`
	ReplyTo   []Address `json:"replyTo,omitempty"`
	To        []Address `json:"to,omitempty"`
	Cc        []Address `json:"cc,omitempty"`
	Bcc       []Address `json:"bcc,omitempty"`
	InReplyTo string    `json:"inReplyTo,omitempty"`
	MessageID string    `json:"messageId,omitempty"`
}

// Address is one RFC 9051 address structure. A group is encoded as in
// RFC 9051: a start marker with Host empty and Mailbox the group name
// (GroupStart true), then members, then an end marker (GroupEnd true).
type Address struct {
	Name       string `json:"name,omitempty"`
	Adl        string `json:"adl,omitempty"`
	Mailbox    string `json:"mailbox,omitempty"`
	Host       string `json:"host,omitempty"`
	GroupStart bool   `json:"gs,omitempty"`
	GroupEnd   bool   `json:"ge,omitempty"`
}

// Param is one Content-Type or Content-Disposition parameter, in order.
type Param struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Part is one node of the MIME tree with byte offsets into the raw message,
// so that IMAP BODY[section] and BINARY[section] are served by seeking in
// the stored bytes, never by re-parsing.
type Part struct {
	// Type and Subtype as IMAP sends them (lower case as written by the
	// parser, defaulting to text/plain; multipart children of a
	// multipart/digest default to message/rfc822).
	Type    string  `json:"type"`
	Subtype string  `json:"sub"`
	Params  []Param `json:"params,omitempty"`

	ID          string `json:"id,omitempty"`
	Description string `json:"desc,omitempty"`
	Encoding    string `json:"enc,omitempty"` // Content-Transfer-Encoding, default "7bit"
	MD5         string `json:"md5,omitempty"`

	Disposition       string   `json:"disp,omitempty"`
	DispositionParams []Param  `json:"dispParams,omitempty"`
	Language          []string `json:"lang,omitempty"`
	Location          string   `json:"loc,omitempty"`

	// HeaderStart is the offset of the part's first header byte, BodyStart
	// of the first body byte (after the blank line), End one past the last
	// body byte. For the top-level part HeaderStart is 0.
	HeaderStart int64 `json:"hs"`
	BodyStart   int64 `json:"bs"`
	End         int64 `json:"end"`
	// Lines is the number of lines of the body (text/* and message/rfc822):
	// the number of LF bytes in [BodyStart, End), as Dovecot counts them.
	Lines int64 `json:"lines,omitempty"`
	// HeaderBareLF and BodyBareLF count the LF bytes not preceded by CR in
	// the header block and in the body. Sizes above are of the bytes as
	// stored; an IMAP server that sends bare-LF mail with CRLF line ends
	// adds these to get the octet counts it announces (RFC 9051 §2.3.1).
	HeaderBareLF int64 `json:"hblf,omitempty"`
	BodyBareLF   int64 `json:"bblf,omitempty"`
	// HeaderOverflow counts header bytes beyond the parser's cap (64 KiB
	// of the fields it uses, per header block): they were scanned for the
	// blank line and boundaries but their fields were ignored.
	HeaderOverflow int64 `json:"hovf,omitempty"`

	// Parts are the children of a multipart; a multipart always has at
	// least one (an empty text/plain stands in, as Dovecot does, when no
	// boundary was found).
	Parts []*Part `json:"parts,omitempty"`
	// Message is the embedded message of a message/rfc822 (or
	// message/global) part: its envelope and its top-level part. Both are
	// always set for these types; when the body is not parseable in place
	// (a base64 encoding) they are empty, as Dovecot sends them.
	Envelope *Envelope `json:"msgEnv,omitempty"`
	Message  *Part     `json:"msg,omitempty"`
}

// Size is the number of body octets, as IMAP BODYSTRUCTURE reports it.
func (p *Part) Size() int64 { return p.End - p.BodyStart }
