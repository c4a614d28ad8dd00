package store

// IMAP-specific reads (internal/imapserver): narrow listings and partial
// decoding of the stored structure for FETCH and SEARCH.

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tern-mail/tern/internal/message"
)

// MessageFlags appends to dst the messages with minUID <= uid <= maxUID
// (maxUID 0: no upper bound), sorted by UID, with only UID, ModSeq and
// Flags filled in: what a FETCH of FLAGS, UID and MODSEQ sends. It reads
// a stretch of the messages table, which is in mailbox and UID order (see
// schemaV15), and messages with the same flags share one Flags slice,
// which callers must not modify.
const messageFlagsQuery = "SELECT uid, modseq, flags FROM messages WHERE " + keyRange + " ORDER BY id"

func (s *Store) MessageFlags(ctx context.Context, mailboxID int64, minUID, maxUID uint32, dst []MessageInfo) ([]MessageInfo, error) {
	if maxUID == 0 {
		maxUID = ^uint32(0)
	}
	ok, err := s.mirrored(ctx, mailboxID, func(mm *mailboxMirror) {
		for _, r := range span(mm.rows, minUID, maxUID) {
			dst = append(dst, MessageInfo{UID: r.uid, ModSeq: r.modseq, Flags: r.flags})
		}
	})
	if ok || err != nil {
		return dst, err
	}
	rows, err := s.query(ctx, messageFlagsQuery, mailboxID, minUID, maxUID)
	if err != nil {
		return dst, err
	}
	defer rows.Close()
	var lists flagLists
	// int64 destinations: database/sql converts an integer to any other
	// type through a formatted string, an allocation a row.
	var uid, modseq int64
	var flags sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&uid, &modseq, &flags); err != nil {
			return dst, err
		}
		dst = append(dst, MessageInfo{UID: uint32(uid), ModSeq: uint64(modseq), Flags: lists.get(flags)})
	}
	return dst, rows.Err()
}

// flagLists interns the split form of stored flag strings: a mailbox has
// few distinct flag combinations, so a listing of many rows allocates a
// handful of slices.
type flagLists struct {
	m map[string][]string
}

func (l *flagLists) get(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	if f, ok := l.m[string(b)]; ok {
		return f
	}
	if l.m == nil || len(l.m) >= 256 {
		l.m = map[string][]string{}
	}
	s := string(b)
	f := strings.Split(s, " ")
	l.m[s] = f[:len(f):len(f)]
	return f
}

// ParsedOptions narrows ParsedSome.
type ParsedOptions struct {
	// EnvelopeOnly needs only the envelope: Structure and Preview may be
	// left out (a cached full structure is returned whole).
	EnvelopeOnly bool
	// MayMatch, when set, sees each message's stored structure before it
	// is decoded and returns false to leave the message out. The bytes
	// are JSON: every string of the envelope appears in them as a JSON
	// string (only '"', '\\', '<', '>', '&', control characters and
	// invalid UTF-8 escaped), so a search can skip messages whose bytes
	// cannot hold what it looks for.
	MayMatch func(raw []byte) bool
}

// envelopeOnly decodes the "env" member of the stored structure and skips
// the rest.
type envelopeOnly struct {
	Envelope message.Envelope `json:"env"`
}

// ParsedSome is Parsed for several messages, with options: messages left
// out by MayMatch and missing ones are absent from the result. The structures may be shared
// with other callers (see parsedCache): never modify them.
func (s *Store) ParsedSome(ctx context.Context, mailboxID int64, uids []uint32, opt ParsedOptions) (map[uint32]*message.Parsed, error) {
	out := make(map[uint32]*message.Parsed, len(uids))
	ranges := uidRanges(uids)
	cache := false
	if opt.MayMatch == nil {
		// A search's filter looks at the stored bytes, which the cache
		// does not keep.
		missing, ok, err := s.parsedFromCache(ctx, mailboxID, uids, opt.EnvelopeOnly, out)
		if err != nil {
			return nil, err
		}
		// Scattered hits would split the request into more queries than
		// it had ranges: then read its ranges, skipping what was found.
		if m := uidRanges(missing); ok && len(m) <= len(ranges) {
			ranges = m
		}
		cache = ok
	}
	for _, r := range ranges {
		if err := s.parsedRange(ctx, mailboxID, r, opt, cache, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parsedRange reads the structures of a range of UIDs into out, skipping
// those already there; cache: remember them (a mirrored mailbox, whose
// reads look there first).
func (s *Store) parsedRange(ctx context.Context, mailboxID int64, r [2]uint32, opt ParsedOptions, cache bool, out map[uint32]*message.Parsed) error {
	rows, err := s.query(ctx, "SELECT m.uid, m.blob_id, mm.meta FROM messages m JOIN message_meta mm ON mm.message_id = m.id WHERE m."+keyRange, mailboxID, r[0], r[1])
	if err != nil {
		return err
	}
	defer rows.Close()
	var id int64
	var blob string
	var meta sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&id, &blob, &meta); err != nil {
			return err
		}
		uid := uint32(id)
		if _, ok := out[uid]; ok {
			continue
		}
		if opt.MayMatch != nil && !opt.MayMatch(meta) {
			continue
		}
		p := new(message.Parsed)
		if opt.EnvelopeOnly {
			var ok bool
			if p.Envelope, ok = decodeEnvelope(meta); !ok {
				var e envelopeOnly
				err = json.Unmarshal(meta, &e)
				p.Envelope = e.Envelope
			}
		} else {
			err = json.Unmarshal(meta, p)
		}
		if err != nil {
			return fmt.Errorf("message %d: %w", uid, err)
		}
		out[uid] = p
		if cache {
			s.parsed.put(blob, p, opt.EnvelopeOnly, len(meta))
		}
	}
	return rows.Err()
}

// flagChangesQuery has no ORDER BY: sorting by UID makes SQLite walk the
// whole mailbox's stretch of the table instead of the few entries above
// modseq in (mailbox_id, modseq); the rows are sorted after.
// The mailbox row (kind 2) gives the HIGHESTMODSEQ of the same snapshot
// and says whether tombstones above modseq may be missing (see
// schemaV14).
const flagChangesQuery = `SELECT uid, modseq, flags, 0, 0 FROM messages WHERE mailbox_id = ?1 AND modseq > ?2
	UNION ALL SELECT uid, modseq, '', 1, 0 FROM tombstones WHERE mailbox_id = ?1 AND modseq > ?2
	UNION ALL SELECT uidnext, vanished_floor, '', 2, highestmodseq FROM mailboxes WHERE id = ?1`

// FlagChangesSince is ChangesSince for a session's update check, in one
// query that reads only the entries above modseq: changed holds only UID,
// ModSeq and Flags (shared flag lists, as in MessageFlags), sorted by
// UID; vanished the UIDs expunged after modseq, sorted; highest the
// mailbox's HIGHESTMODSEQ they bring the caller to (expunges raise it
// too, with no changed message to say so).
func (s *Store) FlagChangesSince(ctx context.Context, mailboxID int64, modseq uint64) (changed []MessageInfo, vanished []uint32, highest uint64, err error) {
	changed, vanished, highest, err = s.flagChanges(ctx, mailboxID, modseq)
	slices.SortFunc(changed, func(a, b MessageInfo) int { return cmp.Compare(a.UID, b.UID) })
	slices.Sort(vanished)
	return changed, vanished, highest, err
}

func (s *Store) flagChanges(ctx context.Context, mailboxID int64, modseq uint64) (changed []MessageInfo, vanished []uint32, highest uint64, err error) {
	rows, err := s.query(ctx, flagChangesQuery, mailboxID, modseq)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rows.Close()
	var lists flagLists
	var uid, ms, kind, hms int64
	var flags sql.RawBytes
	var pruned uint32 // UIDNEXT, when tombstones may be missing
	for rows.Next() {
		if err := rows.Scan(&uid, &ms, &flags, &kind, &hms); err != nil {
			return nil, nil, 0, err
		}
		switch kind {
		case 1:
			vanished = append(vanished, uint32(uid))
		case 2:
			highest = uint64(hms)
			if uint64(ms) > modseq {
				pruned = uint32(uid)
			}
		default:
			changed = append(changed, MessageInfo{UID: uint32(uid), ModSeq: uint64(ms), Flags: lists.get(flags)})
		}
	}
	if err := rows.Err(); err != nil || pruned == 0 {
		return changed, vanished, highest, err
	}
	vanished, err = s.vanishedBelow(ctx, mailboxID, pruned)
	return changed, vanished, highest, err
}
