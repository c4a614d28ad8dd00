package imap

import (
	"sort"
	"strconv"
	"strings"
)

// Star stands for "*" (the largest number in use) in a SeqRange.
const Star = 0

// SeqRange is n or n:m of an RFC 9051 sequence-set; Star (0) is "*".
type SeqRange struct {
	Start, Stop uint32
}

// SeqSet is an RFC 9051 sequence-set. Saved is true for "$" (RFC 5182
// SEARCHRES: the result of the last SEARCH ... RETURN (SAVE)).
type SeqSet struct {
	Ranges []SeqRange
	Saved  bool
}

// maxRanges bounds a sequence set so that a hostile set costs bounded memory.
const maxRanges = 100000

// seqSet parses a sequence-set at the lexer position.
func (l *lexer) seqSet() (SeqSet, error) {
	if l.take('$') {
		return SeqSet{Saved: true}, nil
	}
	var s SeqSet
	for {
		a, err := l.seqNumber()
		if err != nil {
			return s, err
		}
		b := a
		if l.take(':') {
			if b, err = l.seqNumber(); err != nil {
				return s, err
			}
		}
		s.Ranges = append(s.Ranges, SeqRange{Start: a, Stop: b})
		if len(s.Ranges) > maxRanges {
			return s, errorf("sequence set too long")
		}
		if !l.take(',') {
			return s, nil
		}
	}
}

func (l *lexer) seqNumber() (uint32, error) {
	if l.take('*') {
		return Star, nil
	}
	n, err := l.number()
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errorf("sequence number 0 is invalid")
	}
	return n, nil
}

// ParseSeqSet parses a sequence-set string such as "1:3,7,9:*".
func ParseSeqSet(s string) (SeqSet, error) {
	l := &lexer{b: []byte(s)}
	set, err := l.seqSet()
	if err != nil {
		return set, err
	}
	return set, l.end()
}

// norm returns the range with Star replaced by max and Start <= Stop.
func (r SeqRange) norm(max uint32) (uint32, uint32) {
	a, b := r.Start, r.Stop
	if a == Star {
		a = max
	}
	if b == Star {
		b = max
	}
	if a > b {
		a, b = b, a
	}
	return a, b
}

// Contains reports whether n is in the set, where max is the value of "*".
func (s SeqSet) Contains(n, max uint32) bool {
	for _, r := range s.Ranges {
		a, b := r.norm(max)
		if n >= a && n <= b {
			return true
		}
	}
	return false
}

// Dynamic reports whether the set uses "*".
func (s SeqSet) Dynamic() bool {
	for _, r := range s.Ranges {
		if r.Start == Star || r.Stop == Star {
			return true
		}
	}
	return false
}

// String formats the set in IMAP syntax.
func (s SeqSet) String() string {
	if s.Saved {
		return "$"
	}
	var sb strings.Builder
	for i, r := range s.Ranges {
		if i > 0 {
			sb.WriteByte(',')
		}
		writeSeqNum(&sb, r.Start)
		if r.Stop != r.Start {
			sb.WriteByte(':')
			writeSeqNum(&sb, r.Stop)
		}
	}
	return sb.String()
}

func writeSeqNum(sb *strings.Builder, n uint32) {
	if n == Star {
		sb.WriteByte('*')
		return
	}
	sb.WriteString(strconv.FormatUint(uint64(n), 10))
}

// CompactUIDs formats sorted or unsorted numbers as a compact
// sequence-set ("1:3,7"), as UIDPLUS COPYUID and VANISHED need.
func CompactUIDs(nums []uint32) string {
	if len(nums) == 0 {
		return ""
	}
	v := append([]uint32(nil), nums...)
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	var s SeqSet
	start, prev := v[0], v[0]
	for _, n := range v[1:] {
		if n == prev {
			continue
		}
		if n == prev+1 {
			prev = n
			continue
		}
		s.Ranges = append(s.Ranges, SeqRange{start, prev})
		start, prev = n, n
	}
	s.Ranges = append(s.Ranges, SeqRange{start, prev})
	return s.String()
}

// Ordered formats numbers in the given order as a sequence set, merging
// only ascending runs (COPYUID source and destination sets must pair up).
func Ordered(nums []uint32) string {
	if len(nums) == 0 {
		return ""
	}
	var s SeqSet
	start, prev := nums[0], nums[0]
	for _, n := range nums[1:] {
		if n == prev+1 {
			prev = n
			continue
		}
		s.Ranges = append(s.Ranges, SeqRange{start, prev})
		start, prev = n, n
	}
	s.Ranges = append(s.Ranges, SeqRange{start, prev})
	return s.String()
}
