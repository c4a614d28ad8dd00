package imapserver

import (
	"errors"
	"io"
)

// inflater is a DEFLATE (RFC 1951) decoder for the client-to-server side
// of COMPRESS=DEFLATE (RFC 4978). compress/flate cannot be used there: it
// keeps decoded bytes until a stored block or a full window, so a client
// flushing with Z_PARTIAL_FLUSH (an empty fixed block whose last bits stay
// in the client's buffer) waits forever for its answer. This decoder
// returns what it has decoded at every symbol boundary where no more input
// has arrived, so each flushed command is served at once. Input from IMAP
// clients is small; a plain canonical-Huffman decoder is fast enough.
type inflater struct {
	src *byteReader

	bitbuf uint32
	bitcnt uint

	// hist holds the last 32 KiB of output (the LZ77 window) followed by
	// output not yet returned, from hist[out:].
	hist []byte
	out  int

	state   int // inflateHeader, inflateStored, inflateHuffman, inflateDone
	final   bool
	stored  int // bytes left in a stored block
	lit     huffman
	dist    huffman
	err     error
	scratch [320]uint8
}

const (
	inflateHeader = iota
	inflateStored
	inflateHuffman
	inflateDone
)

const windowSize = 32 << 10

var errCorrupt = errors.New("inflate: corrupt DEFLATE stream")

// huffman is a canonical code: count[len] codes of each length, symbols
// sorted by code.
type huffman struct {
	count  [16]uint16
	symbol [288]uint16
}

func (h *huffman) build(lengths []uint8) error {
	h.count = [16]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	if int(h.count[0]) == len(lengths) {
		return nil // no codes: only valid if never used
	}
	left := 1
	for l := 1; l < 16; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return errCorrupt // over-subscribed
		}
	}
	var offs [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return nil
}

func newInflater(src *byteReader) *inflater {
	return &inflater{src: src, hist: make([]byte, 0, 2*windowSize)}
}

func (f *inflater) need(n uint) error {
	for f.bitcnt < n {
		c, err := f.src.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		f.bitbuf |= uint32(c) << f.bitcnt
		f.bitcnt += 8
	}
	return nil
}

func (f *inflater) bits(n uint) (int, error) {
	if err := f.need(n); err != nil {
		return 0, err
	}
	v := int(f.bitbuf & (1<<n - 1))
	f.bitbuf >>= n
	f.bitcnt -= n
	return v, nil
}

// decode reads one symbol, bit by bit (RFC 1951 §3.1.1: codes are packed
// starting with the most significant bit of the code).
func (f *inflater) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := f.bits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		count := int(h.count[l])
		if code-first < count {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, errCorrupt
}

// Read returns decoded bytes, as soon as some are ready and the input has
// nothing more buffered.
func (f *inflater) Read(p []byte) (int, error) {
	for {
		if f.out < len(f.hist) && (f.src.Buffered() == 0 || len(f.hist)-f.out >= len(p) || f.state == inflateDone) {
			n := copy(p, f.hist[f.out:])
			f.out += n
			f.compact()
			return n, nil
		}
		if f.err != nil {
			return 0, f.err
		}
		if f.state == inflateDone {
			return 0, io.EOF
		}
		f.err = f.step()
	}
}

// compact drops history older than the window once it has been returned.
func (f *inflater) compact() {
	if f.out == len(f.hist) && len(f.hist) > windowSize+windowSize/2 {
		keep := f.hist[len(f.hist)-windowSize:]
		f.hist = append(f.hist[:0], keep...)
		f.out = len(f.hist)
	}
}

// step decodes one block header, one stored byte run or one symbol.
func (f *inflater) step() error {
	switch f.state {
	case inflateHeader:
		if f.final {
			f.state = inflateDone
			return nil
		}
		return f.header()
	case inflateStored:
		for f.stored > 0 {
			c, err := f.src.ReadByte()
			if err != nil {
				return err
			}
			f.hist = append(f.hist, c)
			f.stored--
			if f.src.Buffered() == 0 {
				break
			}
		}
		if f.stored == 0 {
			f.state = inflateHeader
		}
		return nil
	case inflateHuffman:
		return f.symbol()
	}
	return nil
}

func (f *inflater) header() error {
	h, err := f.bits(3)
	if err != nil {
		return err
	}
	f.final = h&1 == 1
	switch h >> 1 {
	case 0:
		// Stored block: skip to a byte boundary, LEN and NLEN.
		f.bitbuf, f.bitcnt = 0, 0
		var b [4]byte
		for i := range b {
			if b[i], err = f.src.ReadByte(); err != nil {
				return err
			}
		}
		n := int(b[0]) | int(b[1])<<8
		if n != ^(int(b[2])|int(b[3])<<8)&0xffff {
			return errCorrupt
		}
		f.stored = n
		f.state = inflateStored
		return nil
	case 1:
		f.fixedTables()
	case 2:
		if err := f.dynamicTables(); err != nil {
			return err
		}
	default:
		return errCorrupt
	}
	f.state = inflateHuffman
	return nil
}

func (f *inflater) fixedTables() {
	l := f.scratch[:288]
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	f.lit.build(l)
	d := f.scratch[:30]
	for i := range d {
		d[i] = 5
	}
	f.dist.build(d)
}

var clOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func (f *inflater) dynamicTables() error {
	hlit, err := f.bits(5)
	if err != nil {
		return err
	}
	hdist, err := f.bits(5)
	if err != nil {
		return err
	}
	hclen, err := f.bits(4)
	if err != nil {
		return err
	}
	nlen, ndist, ncode := hlit+257, hdist+1, hclen+4
	if nlen > 286 || ndist > 30 {
		return errCorrupt
	}
	var cl [19]uint8
	for i := 0; i < ncode; i++ {
		v, err := f.bits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(v)
	}
	var lencode huffman
	if err := lencode.build(cl[:]); err != nil {
		return err
	}
	lengths := f.scratch[:nlen+ndist]
	for i := 0; i < len(lengths); {
		sym, err := f.decode(&lencode)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var val uint8
		var rep int
		switch sym {
		case 16:
			if i == 0 {
				return errCorrupt
			}
			val = lengths[i-1]
			rep, err = f.bits(2)
			rep += 3
		case 17:
			rep, err = f.bits(3)
			rep += 3
		default:
			rep, err = f.bits(7)
			rep += 11
		}
		if err != nil {
			return err
		}
		if i+rep > len(lengths) {
			return errCorrupt
		}
		for ; rep > 0; rep-- {
			lengths[i] = val
			i++
		}
	}
	if lengths[256] == 0 {
		return errCorrupt // no end-of-block code
	}
	if err := f.lit.build(lengths[:nlen]); err != nil {
		return err
	}
	return f.dist.build(lengths[nlen:])
}

var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
		1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// symbol decodes one literal, end of block, or length/distance pair.
func (f *inflater) symbol() error {
	sym, err := f.decode(&f.lit)
	if err != nil {
		return err
	}
	switch {
	case sym < 256:
		f.hist = append(f.hist, byte(sym))
		return nil
	case sym == 256:
		f.state = inflateHeader
		return nil
	}
	sym -= 257
	if sym >= 29 {
		return errCorrupt
	}
	extra, err := f.bits(uint(lenExtra[sym]))
	if err != nil {
		return err
	}
	length := int(lenBase[sym]) + extra
	dsym, err := f.decode(&f.dist)
	if err != nil {
		return err
	}
	if dsym >= 30 {
		return errCorrupt
	}
	if extra, err = f.bits(uint(distExtra[dsym])); err != nil {
		return err
	}
	d := int(distBase[dsym]) + extra
	if d > len(f.hist) {
		return errCorrupt
	}
	start := len(f.hist) - d
	for i := 0; i < length; i++ {
		f.hist = append(f.hist, f.hist[start+i])
	}
	return nil
}
