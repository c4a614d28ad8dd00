package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tern-mail/tern/internal/message"
)

// MessageInfo is the per-message state that protocols list and sync.
type MessageInfo struct {
	UID          uint32
	ModSeq       uint64
	Flags        []string // system flags (`\Seen`) and keywords, sorted
	InternalDate time.Time
	Size         int64
	BlobID       string
}

// Target is one mailbox a delivery goes to.
type Target struct {
	AccountID int64
	MailboxID int64  // if 0, Mailbox names it
	Mailbox   string // "" means INBOX; a missing mailbox falls back to INBOX
	Flags     []string
}

// Delivery is one message for one or more mailboxes: one blob, one row per
// target.
type Delivery struct {
	Blob         Blob
	Parsed       *message.Parsed
	InternalDate time.Time
	Targets      []Target
	IgnoreQuota  bool
	// SkipDuplicate: a target mailbox that already holds a message with the
	// same bytes is left alone and its result says ErrExists.
	SkipDuplicate bool
}

// Delivered is the outcome for one target.
type Delivered struct {
	AccountID   int64
	MailboxID   int64
	UIDValidity uint32
	UID         uint32
	ModSeq      uint64 // the message's modseq, the one its delivery took
	Err         error  // ErrOverQuota, ErrExists (duplicate), ErrNotFound
}

// AppendRequest stores one message into one mailbox.
type AppendRequest struct {
	AccountID     int64
	MailboxID     int64
	Body          io.Reader
	Flags         []string
	InternalDate  time.Time
	IgnoreQuota   bool
	SkipDuplicate bool
}

// UIDPair maps a source UID to the UID of its copy.
type UIDPair struct{ Src, Dst uint32 }

// FlagOp says how UpdateFlags combines flags.
type FlagOp int

const (
	FlagsAdd FlagOp = iota
	FlagsRemove
	FlagsReplace
)

// FlagUpdate is one STORE.
type FlagUpdate struct {
	UIDs           []uint32
	Op             FlagOp
	Flags          []string
	UnchangedSince uint64 // RFC 7162 UNCHANGEDSINCE; 0: none
}

var systemFlags = map[string]string{
	`\seen`: `\Seen`, `\answered`: `\Answered`, `\flagged`: `\Flagged`,
	`\deleted`: `\Deleted`, `\draft`: `\Draft`,
}

// NormalizeFlags canonicalises system flags, drops \Recent and duplicates,
// and sorts.
func NormalizeFlags(flags []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if f == "" || strings.EqualFold(f, `\Recent`) {
			continue
		}
		if c, ok := systemFlags[strings.ToLower(f)]; ok {
			f = c
		}
		if !seen[strings.ToLower(f)] {
			seen[strings.ToLower(f)] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nextModSeq raises a mailbox's highest modseq and returns the new value
// with the mailbox's account: one statement and one row per write. The
// counter is per mailbox, as RFC 7162 §3.1.1 asks: its values grow with
// every change in the mailbox and never repeat in it (a mailbox that is
// deleted and created again has a new UIDVALIDITY).
func (s *Store) nextModSeq(ctx context.Context, tx *wtx, mailboxID int64) (accountID int64, modseq uint64, err error) {
	var uv uint32
	err = s.txQueryRow(ctx, tx, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING account_id, highestmodseq, uidvalidity", mailboxID).Scan(&accountID, &modseq, &uv)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("mailbox %d: %w", mailboxID, ErrNotFound)
	}
	if err == nil {
		s.noteModSeq(mailboxID, uv, modseq)
	}
	return accountID, modseq, err
}

// Deliver stores one message for its targets and returns once durable.
// Concurrent calls share a commit. Per-target problems (quota, duplicate)
// are in the results; the error is for failures of the whole delivery.
func (s *Store) Deliver(ctx context.Context, d *Delivery) ([]Delivered, error) {
	res, err := s.DeliverBatch(ctx, []*Delivery{d})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// DeliverBatch stores several deliveries in one write, in order: the UIDs
// of messages bound for one mailbox follow the order of ds (bulk import
// keeps the order of its source, which concurrent Deliver calls would
// not). It returns once the batch is durable. Results are per delivery and
// target as for Deliver; a delivery none of whose targets took it leaves
// its blob unreferenced, for the caller to discard. The error is for
// failures of the whole batch, which then stores nothing.
func (s *Store) DeliverBatch(ctx context.Context, ds []*Delivery) ([][]Delivered, error) {
	metas, err := deliveryMetas(ds)
	if err != nil {
		return nil, err
	}
	results := make([][]Delivered, len(ds))
	err = s.update(ctx, func(ctx context.Context, tx *wtx) error {
		for i, d := range ds {
			res := make([]Delivered, len(d.Targets))
			n := 0
			for j, t := range d.Targets {
				r, err := s.deliverOne(ctx, tx, d, t, metas[i])
				if err != nil && !errors.Is(err, ErrOverQuota) && !errors.Is(err, ErrExists) && !errors.Is(err, ErrNotFound) {
					return err
				}
				r.Err = err
				res[j] = r
				if err == nil {
					n++
				}
			}
			results[i] = res
			if n > 0 {
				if err := s.refBlob(tx, d.Blob, n); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// deliveryMetas encodes the parsed structure of each delivery, as stored
// beside its message, and dates those that came without a date.
func deliveryMetas(ds []*Delivery) ([][]byte, error) {
	metas := make([][]byte, len(ds))
	for i, d := range ds {
		if d.Parsed == nil {
			return nil, fmt.Errorf("deliver: no parsed message: %w", ErrInvalid)
		}
		meta, err := json.Marshal(d.Parsed)
		if err != nil {
			return nil, err
		}
		metas[i] = meta
		if d.InternalDate.IsZero() {
			d.InternalDate = time.Now()
		}
	}
	return metas, nil
}

func (s *Store) targetMailbox(ctx context.Context, tx *wtx, t Target) (id int64, uidValidity, uidNext uint32, err error) {
	if t.MailboxID != 0 {
		err = s.hot.mailboxByID.QueryRowContext(ctx, t.MailboxID, t.AccountID).Scan(&id, &uidValidity, &uidNext)
	} else {
		name := t.Mailbox
		if n, nerr := NormalizeMailboxName(name); nerr == nil {
			name = n
		} else {
			name = "INBOX"
		}
		err = s.hot.mailboxByName.QueryRowContext(ctx, t.AccountID, name).Scan(&id, &uidValidity, &uidNext)
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("mailbox for account %d: %w", t.AccountID, ErrNotFound)
	}
	return
}

func (s *Store) deliverOne(ctx context.Context, tx *wtx, d *Delivery, t Target, meta []byte) (Delivered, error) {
	r := Delivered{AccountID: t.AccountID}
	id, uv, uid, err := s.targetMailbox(ctx, tx, t)
	if err != nil {
		return r, err
	}
	r.MailboxID, r.UIDValidity = id, uv
	if uid == math.MaxUint32 {
		// UIDNEXT must stay above the last UID, in 32 bits.
		return r, fmt.Errorf("mailbox %d: %w", id, ErrUIDsExhausted)
	}
	if d.SkipDuplicate {
		var one int
		err := s.hot.duplicate.QueryRowContext(ctx, id, d.Blob.Digest).Scan(&one)
		if err == nil {
			return r, fmt.Errorf("duplicate message: %w", ErrExists)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	var quota, used int64
	size := d.Blob.Size
	err = s.hot.chargeAccount.QueryRowContext(ctx, size, t.AccountID).Scan(&quota, &used)
	if err != nil {
		return r, err
	}
	if err := s.refundOverQuota(ctx, tx, t.AccountID, size, quota, used, d.IgnoreQuota); err != nil {
		return r, err
	}
	// One statement takes the UID and the next modseq.
	var modseq uint64
	if err := s.hot.bumpMailbox.QueryRowContext(ctx, id).Scan(&modseq); err != nil {
		return r, err
	}
	s.noteModSeq(id, uv, modseq)
	flags := NormalizeFlags(t.Flags)
	var rowID int64
	err = s.hot.insertMessage.QueryRowContext(ctx, id, uid, modseq, strings.Join(flags, " "),
		boolInt(hasFlag(flags, `\Seen`)), boolInt(hasFlag(flags, `\Deleted`)), d.InternalDate.Unix(), size, d.Blob.ID, d.Blob.Digest).Scan(&rowID)
	if err != nil {
		return r, err
	}
	if _, err := s.hot.insertMeta.ExecContext(ctx, rowID, meta); err != nil {
		return r, err
	}
	r.UID, r.ModSeq = uid, modseq
	s.touch(t.AccountID)
	return r, nil
}

// chargeQuota adds size bytes to an account's usage, failing with
// ErrOverQuota if that crosses its quota (unless ignore).
func (s *Store) chargeQuota(ctx context.Context, tx *wtx, accountID, size int64, ignore bool) error {
	var quota, used int64
	err := s.txQueryRow(ctx, tx, "UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ? RETURNING quota_bytes, used_bytes", size, accountID).Scan(&quota, &used)
	if err != nil {
		return err
	}
	return s.refundOverQuota(ctx, tx, accountID, size, quota, used, ignore)
}

// refundOverQuota takes back a charge of size bytes that brought an
// account's usage to used, over its quota, and fails with ErrOverQuota
// (unless ignore). Growing within the quota, or shrinking, passes.
func (s *Store) refundOverQuota(ctx context.Context, tx *wtx, accountID, size, quota, used int64, ignore bool) error {
	if ignore || quota <= 0 || used <= quota || size <= 0 {
		return nil
	}
	if _, err := s.txExec(ctx, tx, "UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?", size, accountID); err != nil {
		return err
	}
	return fmt.Errorf("account %d: %w", accountID, ErrOverQuota)
}

// Append writes a message's bytes, parses them and stores the message in
// one mailbox (IMAP APPEND, import, the webmail's drafts).
func (s *Store) Append(ctx context.Context, req AppendRequest) (Delivered, error) {
	d, err := s.stageAppend(req)
	if err != nil {
		return Delivered{}, err
	}
	res, err := s.Deliver(ctx, d)
	if err == nil && res[0].Err != nil {
		err = res[0].Err
	}
	if err != nil {
		s.DiscardBlob(ctx, d.Blob.ID)
		if len(res) == 1 {
			return res[0], err
		}
		return Delivered{}, err
	}
	return res[0], nil
}

// AppendAll stores several messages in one write: all of them, in order,
// or none (IMAP MULTIAPPEND, RFC 3502 §6.3.11). A quota that one of them
// would cross refuses the lot with ErrOverQuota, even when another
// delivery took space between the caller's check and this write.
func (s *Store) AppendAll(ctx context.Context, reqs []AppendRequest) ([]Delivered, error) {
	ds := make([]*Delivery, 0, len(reqs))
	discard := func() {
		for _, d := range ds {
			s.DiscardBlob(ctx, d.Blob.ID)
		}
	}
	for _, req := range reqs {
		d, err := s.stageAppend(req)
		if err != nil {
			discard()
			return nil, err
		}
		ds = append(ds, d)
	}
	metas, err := deliveryMetas(ds)
	if err != nil {
		discard()
		return nil, err
	}
	out := make([]Delivered, len(ds))
	err = s.update(ctx, func(ctx context.Context, tx *wtx) error {
		for i, d := range ds {
			r, err := s.deliverOne(ctx, tx, d, d.Targets[0], metas[i])
			if err != nil {
				return err // the savepoint takes back the ones before
			}
			if err := s.refBlob(tx, d.Blob, 1); err != nil {
				return err
			}
			out[i] = r
		}
		return nil
	})
	if err != nil {
		discard()
		return nil, err
	}
	return out, nil
}

// stageAppend writes an appended message's bytes to a blob and parses
// them, ready to deliver to its one mailbox.
func (s *Store) stageAppend(req AppendRequest) (*Delivery, error) {
	w, err := s.NewBlob()
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, req.Body); err != nil {
		w.Abort()
		return nil, err
	}
	blob, err := w.Commit()
	if err != nil {
		return nil, err
	}
	parsed, err := s.parseBlob(blob.ID)
	if err != nil {
		s.DiscardBlob(context.Background(), blob.ID)
		return nil, err
	}
	return &Delivery{
		Blob: blob, Parsed: parsed, InternalDate: req.InternalDate,
		Targets:     []Target{{AccountID: req.AccountID, MailboxID: req.MailboxID, Flags: req.Flags}},
		IgnoreQuota: req.IgnoreQuota, SkipDuplicate: req.SkipDuplicate,
	}, nil
}

func (s *Store) parseBlob(id string) (*message.Parsed, error) {
	f, err := s.OpenBlob(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return message.Parse(f)
}

// DiscardBlob removes a committed blob that no row references (a delivery
// that failed or went nowhere). It is a no-op for a referenced blob.
func (s *Store) DiscardBlob(ctx context.Context, id string) {
	if !validBlobID(id) {
		return
	}
	s.pending.drop(id)
	var one int
	err := s.queryRow(ctx, "SELECT 1 FROM blobs WHERE id = ?", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		if err := removeFile(s.blobPath(id)); err != nil {
			s.log.Warn("discarding blob", "blob", id, "err", err)
		}
	}
}

const infoCols = "uid, modseq, flags, internal_date, size, blob_id"

func scanInfo(r scanner) (MessageInfo, error) {
	var m MessageInfo
	var flags string
	// Integers scan into int64: database/sql converts any other integer
	// destination through a string.
	var uid, modseq, date int64
	if err := r.Scan(&uid, &modseq, &flags, &date, &m.Size, &m.BlobID); err != nil {
		return m, err
	}
	m.UID, m.ModSeq = uint32(uid), uint64(modseq)
	if flags != "" {
		m.Flags = strings.Split(flags, " ")
	}
	m.InternalDate = time.Unix(date, 0)
	return m, nil
}

func (s *Store) queryInfos(ctx context.Context, tx *wtx, query string, args ...any) ([]MessageInfo, error) {
	if tx != nil {
		if st := s.txStmt(ctx, tx, query); st != nil {
			return scanInfos(st.QueryContext(ctx, args...))
		}
		return scanInfos(tx.QueryContext(ctx, query, args...))
	}
	return scanInfos(s.query(ctx, query, args...))
}

// scanInfos reads MessageInfo rows.
func scanInfos(rows *sql.Rows, err error) ([]MessageInfo, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MessageInfo
	for rows.Next() {
		m, err := scanInfo(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Messages lists a mailbox's messages with minUID <= uid <= maxUID (maxUID
// 0: no upper bound), sorted by UID.
func (s *Store) Messages(ctx context.Context, mailboxID int64, minUID, maxUID uint32) ([]MessageInfo, error) {
	if maxUID == 0 {
		maxUID = ^uint32(0)
	}
	var out []MessageInfo
	ok, err := s.mirrored(ctx, mailboxID, func(mm *mailboxMirror) {
		rows := span(mm.rows, minUID, maxUID)
		out = make([]MessageInfo, len(rows))
		for i := range rows {
			out[i] = rows[i].info()
		}
	})
	if ok || err != nil {
		return out, err
	}
	return s.queryInfos(ctx, nil, "SELECT "+infoCols+" FROM messages WHERE "+keyRange+" ORDER BY id", mailboxID, minUID, maxUID)
}

// Parsed returns what delivery stored about a message's structure.
func (s *Store) Parsed(ctx context.Context, mailboxID int64, uid uint32) (*message.Parsed, error) {
	var meta []byte
	err := s.queryRow(ctx, "SELECT mm.meta FROM messages m JOIN message_meta mm ON mm.message_id = m.id WHERE m.id = (?1 << 32) | ?2", mailboxID, uid).Scan(&meta)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", uid, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	var p message.Parsed
	return &p, json.Unmarshal(meta, &p)
}

// keyRange and mailboxKeys select rows by their key (schemaV15: id =
// mailbox_id << 32 | uid), a stretch of the table in UID order: keyRange
// the UIDs ?2 to ?3 of mailbox ?1, mailboxKeys all of mailbox ?1.
const (
	keyRange    = "id BETWEEN (?1 << 32) | ?2 AND (?1 << 32) | ?3"
	mailboxKeys = "id BETWEEN ?1 << 32 AND (?1 << 32) | 4294967295"
)

// uidRanges turns a UID list into sorted inclusive ranges.
func uidRanges(uids []uint32) [][2]uint32 {
	if len(uids) == 0 {
		return nil
	}
	u := append([]uint32(nil), uids...)
	sort.Slice(u, func(i, j int) bool { return u[i] < u[j] })
	var out [][2]uint32
	cur := [2]uint32{u[0], u[0]}
	for _, x := range u[1:] {
		if x <= cur[1]+1 {
			if x > cur[1] {
				cur[1] = x
			}
			continue
		}
		out = append(out, cur)
		cur = [2]uint32{x, x}
	}
	return append(out, cur)
}

// infosByUIDs loads the rows of the given UIDs inside a write.
func (s *Store) infosByUIDs(ctx context.Context, tx *wtx, mailboxID int64, uids []uint32) ([]MessageInfo, error) {
	var out []MessageInfo
	for _, r := range uidRanges(uids) {
		infos, err := scanInfos(s.hot.infosRange.QueryContext(ctx, mailboxID, r[0], r[1]))
		if err != nil {
			return nil, err
		}
		out = append(out, infos...)
	}
	return out, nil
}

func (s *Store) mailboxAccount(ctx context.Context, tx *wtx, mailboxID int64) (int64, error) {
	var acct int64
	err := s.txQueryRow(ctx, tx, "SELECT account_id FROM mailboxes WHERE id = ?", mailboxID).Scan(&acct)
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("mailbox %d: %w", mailboxID, ErrNotFound)
	}
	return acct, err
}

func applyFlags(cur []string, u FlagUpdate) []string {
	switch u.Op {
	case FlagsReplace:
		return NormalizeFlags(u.Flags)
	case FlagsAdd:
		return NormalizeFlags(append(append([]string(nil), cur...), u.Flags...))
	default:
		var out []string
		for _, f := range cur {
			if !hasFlag(u.Flags, f) {
				out = append(out, f)
			}
		}
		return NormalizeFlags(out)
	}
}

// UpdateFlags changes the flags of the given messages with one new modseq.
// updated holds every matched message with its flags and modseq after the
// change (changed or not); failed the UIDs skipped because their modseq
// was above UnchangedSince (RFC 7162 §3.1.3).
func (s *Store) UpdateFlags(ctx context.Context, mailboxID int64, u FlagUpdate) (updated []MessageInfo, failed []uint32, err error) {
	r, err := s.SetFlags(ctx, mailboxID, u)
	return r.Updated, r.Failed, err
}

// FlagResult is what SetFlags did: Updated and Failed as UpdateFlags
// returns them, and ModSeq, the one new modseq the changed messages took
// (0 when nothing changed). A session whose view of the mailbox was
// exact at ModSeq-1 knows it exact at ModSeq without reading it again.
type FlagResult struct {
	Updated []MessageInfo
	Failed  []uint32
	ModSeq  uint64
}

// SetFlags is UpdateFlags, reporting the modseq of the change.
func (s *Store) SetFlags(ctx context.Context, mailboxID int64, u FlagUpdate) (FlagResult, error) {
	var updated []MessageInfo
	var failed []uint32
	var modseq uint64
	err := s.updateLazy(ctx, func(ctx context.Context, tx *wtx) error {
		updated, failed, modseq = nil, nil, 0
		var acct int64
		infos, err := s.infosByUIDs(ctx, tx, mailboxID, u.UIDs)
		if err != nil {
			return err
		}
		// Messages that end with the same flags are written by one UPDATE
		// per run of consecutive UIDs: a statement per row would make
		// SQLite open and truncate a statement journal for each one.
		groups := map[string][]uint32{}
		var order []string
		for _, m := range infos {
			if u.UnchangedSince > 0 && m.ModSeq > u.UnchangedSince {
				failed = append(failed, m.UID)
				continue
			}
			nf := applyFlags(m.Flags, u)
			if key := strings.Join(nf, " "); key != strings.Join(m.Flags, " ") {
				if modseq == 0 {
					if acct, modseq, err = s.nextModSeq(ctx, tx, mailboxID); err != nil {
						return err
					}
				}
				if _, ok := groups[key]; !ok {
					order = append(order, key)
				}
				groups[key] = append(groups[key], m.UID)
				m.Flags, m.ModSeq = nf, modseq
			}
			updated = append(updated, m)
		}
		for _, key := range order {
			nf := strings.Fields(key)
			for _, r := range uidRanges(groups[key]) {
				_, err := s.txExec(ctx, tx, "UPDATE messages SET flags = ?1, seen = ?2, deleted = ?3, modseq = ?4 WHERE id BETWEEN (?5 << 32) | ?6 AND (?5 << 32) | ?7",
					key, boolInt(hasFlag(nf, `\Seen`)), boolInt(hasFlag(nf, `\Deleted`)), modseq, mailboxID, r[0], r[1])
				if err != nil {
					return err
				}
			}
		}
		if modseq != 0 {
			s.touch(acct)
		}
		return nil
	})
	if err != nil {
		return FlagResult{}, err
	}
	return FlagResult{Updated: updated, Failed: failed, ModSeq: modseq}, nil
}

// Expunge removes messages for good, leaving tombstones for QRESYNC. With
// uids nil it removes every \Deleted message; otherwise exactly the listed
// ones that exist. It returns the UIDs removed, sorted.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	removed, _, err := s.ExpungeModSeq(ctx, mailboxID, uids)
	return removed, err
}

// ExpungeModSeq is Expunge, reporting the modseq of the tombstones (0 when
// nothing was removed).
func (s *Store) ExpungeModSeq(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, uint64, error) {
	var removed []uint32
	var modseq uint64
	err := s.updateLazy(ctx, func(ctx context.Context, tx *wtx) error {
		removed, modseq = nil, 0
		var infos []MessageInfo
		var err error
		if uids == nil {
			infos, err = s.queryInfos(ctx, tx, "SELECT "+infoCols+" FROM messages WHERE mailbox_id = ? AND deleted = 1 ORDER BY uid", mailboxID)
		} else {
			infos, err = s.infosByUIDs(ctx, tx, mailboxID, uids)
		}
		if err != nil || len(infos) == 0 {
			return err
		}
		removed, modseq, err = s.expungeInfos(ctx, tx, mailboxID, infos)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return removed, modseq, nil
}

func (s *Store) expungeInfos(ctx context.Context, tx *wtx, mailboxID int64, infos []MessageInfo) ([]uint32, uint64, error) {
	acct, modseq, err := s.nextModSeq(ctx, tx, mailboxID)
	if err != nil {
		return nil, 0, err
	}
	removed := make([]uint32, 0, len(infos))
	var size int64
	for _, m := range infos {
		if _, err := s.txExec(ctx, tx, "DELETE FROM messages WHERE id = (?1 << 32) | ?2", mailboxID, m.UID); err != nil {
			return nil, 0, err
		}
		if _, err := s.txExec(ctx, tx, "INSERT OR REPLACE INTO tombstones(mailbox_id, uid, modseq) VALUES(?, ?, ?)", mailboxID, m.UID, modseq); err != nil {
			return nil, 0, err
		}
		if err := s.refBlob(tx, Blob{ID: m.BlobID}, -1); err != nil {
			return nil, 0, err
		}
		size += m.Size
		removed = append(removed, m.UID)
	}
	if _, err := s.txExec(ctx, tx, "UPDATE accounts SET used_bytes = max(0, used_bytes - ?) WHERE id = ?", size, acct); err != nil {
		return nil, 0, err
	}
	s.touch(acct)
	return removed, modseq, nil
}

// releaseMessages drops the blob references and quota usage of the
// messages matching where (a condition on messages), before their rows go.
func (s *Store) releaseMessages(ctx context.Context, tx *wtx, where string, args ...any) error {
	rows, err := tx.QueryContext(ctx, "SELECT blob_id, count(*) FROM messages WHERE "+where+" GROUP BY blob_id", args...)
	if err != nil {
		return err
	}
	type ref struct {
		id string
		n  int
	}
	var refs []ref
	for rows.Next() {
		var r ref
		if err := rows.Scan(&r.id, &r.n); err != nil {
			rows.Close()
			return err
		}
		refs = append(refs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range refs {
		if err := s.refBlob(tx, Blob{ID: r.id}, -r.n); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE accounts SET used_bytes = max(0, used_bytes - coalesce((SELECT sum(size) FROM messages WHERE `+where+`), 0))
		WHERE id IN (SELECT account_id FROM mailboxes WHERE id IN (SELECT mailbox_id FROM messages WHERE `+where+`))`, append(append([]any{}, args...), args...)...)
	return err
}

// Copy copies messages to another mailbox of the same account (RFC 4315
// COPYUID data in the result).
func (s *Store) Copy(ctx context.Context, srcMailboxID, dstMailboxID int64, uids []uint32) (uint32, []UIDPair, error) {
	return s.copyMove(ctx, srcMailboxID, dstMailboxID, uids, false)
}

// Move moves messages to another mailbox (RFC 6851), atomically.
func (s *Store) Move(ctx context.Context, srcMailboxID, dstMailboxID int64, uids []uint32) (uint32, []UIDPair, error) {
	return s.copyMove(ctx, srcMailboxID, dstMailboxID, uids, true)
}

func (s *Store) copyMove(ctx context.Context, src, dst int64, uids []uint32, move bool) (uint32, []UIDPair, error) {
	var uv uint32
	var pairs []UIDPair
	err := s.update(ctx, func(ctx context.Context, tx *wtx) error {
		pairs = nil
		acct, err := s.mailboxAccount(ctx, tx, src)
		if err != nil {
			return err
		}
		var dstAcct int64
		var uidNext uint32
		err = s.txQueryRow(ctx, tx, "SELECT account_id, uidvalidity, uidnext FROM mailboxes WHERE id = ?", dst).Scan(&dstAcct, &uv, &uidNext)
		if errors.Is(err, sql.ErrNoRows) || err == nil && dstAcct != acct {
			return fmt.Errorf("mailbox %d: %w", dst, ErrNotFound)
		} else if err != nil {
			return err
		}
		infos, err := s.infosByUIDs(ctx, tx, src, uids)
		if err != nil || len(infos) == 0 {
			return err
		}
		if uint64(uidNext)+uint64(len(infos)) > math.MaxUint32 {
			// UIDs are 32 bits and UIDNEXT must stay above the last.
			return fmt.Errorf("mailbox %d: %w", dst, ErrUIDsExhausted)
		}
		_, modseq, err := s.nextModSeq(ctx, tx, dst)
		if err != nil {
			return err
		}
		var size int64
		for _, m := range infos {
			var srcID, dstID int64
			err := s.txQueryRow(ctx, tx, `INSERT INTO messages(id, mailbox_id, uid, modseq, flags, seen, deleted, internal_date, size, blob_id, digest)
				SELECT (?1 << 32) | ?2, ?1, ?2, ?3, flags, seen, deleted, internal_date, size, blob_id, digest FROM messages WHERE id = (?4 << 32) | ?5
				RETURNING id, (?4 << 32) | ?5`,
				dst, uidNext, modseq, src, m.UID).Scan(&dstID, &srcID)
			if err != nil {
				return err
			}
			if _, err := s.txExec(ctx, tx, "INSERT INTO message_meta(message_id, meta) SELECT ?, meta FROM message_meta WHERE message_id = ?", dstID, srcID); err != nil {
				return err
			}
			if _, err := s.txExec(ctx, tx, "UPDATE blobs SET refs = refs + 1 WHERE id = ?", m.BlobID); err != nil {
				return err
			}
			pairs = append(pairs, UIDPair{Src: m.UID, Dst: uidNext})
			uidNext++
			size += m.Size
		}
		if _, err := s.txExec(ctx, tx, "UPDATE mailboxes SET uidnext = ? WHERE id = ?", uidNext, dst); err != nil {
			return err
		}
		if err := s.chargeQuota(ctx, tx, acct, size, move); err != nil {
			return err
		}
		s.touch(acct)
		if move {
			_, _, err = s.expungeInfos(ctx, tx, src, infos)
		}
		return err
	})
	return uv, pairs, err
}

// ChangesSince returns the messages whose modseq is above modseq and the
// UIDs expunged after it (RFC 7162 CHANGEDSINCE and VANISHED).
func (s *Store) ChangesSince(ctx context.Context, mailboxID int64, modseq uint64) ([]MessageInfo, []uint32, error) {
	// No ORDER BY: SQLite would walk the mailbox's whole stretch of the
	// table instead of the modseq index; the few changes are sorted here.
	changed, err := s.queryInfos(ctx, nil, "SELECT "+infoCols+" FROM messages WHERE mailbox_id = ? AND modseq > ?", mailboxID, modseq)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(changed, func(a, b MessageInfo) int { return cmp.Compare(a.UID, b.UID) })
	rows, err := s.query(ctx, "SELECT uid FROM tombstones WHERE mailbox_id = ? AND modseq > ?", mailboxID, modseq)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var vanished []uint32
	for rows.Next() {
		var uid int64
		if err := rows.Scan(&uid); err != nil {
			return nil, nil, err
		}
		vanished = append(vanished, uint32(uid))
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	var floor int64
	var uidNext uint32
	if err := s.queryRow(ctx, "SELECT vanished_floor, uidnext FROM mailboxes WHERE id = ?", mailboxID).Scan(&floor, &uidNext); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, err
	}
	if uint64(floor) > modseq {
		// Tombstones above modseq may be gone: report every missing UID.
		if vanished, err = s.vanishedBelow(ctx, mailboxID, uidNext); err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(vanished)
	return changed, vanished, nil
}
