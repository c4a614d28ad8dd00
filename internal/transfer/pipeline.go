package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/store"
)

// The import pipeline keeps the source order and memory flat while the
// slow parts run in parallel:
//
//	reader (caller)   reads each message into a buffer from a fixed pool
//	                  (a message too big for one streams into its blob
//	                  file right away)
//	workers           write the blob file and parse the message, in
//	                  parallel: creating files is slow on many file systems
//	collector         puts messages back in source order, makes a batch of
//	                  blobs durable with one store.SyncBlobs and stores the
//	                  batch with one commit (store.DeliverBatch)
//
// Memory is bounded by the buffer pool (pipelineBuffers of at most
// maxBuffered bytes each) and the window of parsed structures waiting for
// the collector.
const (
	pipelineWorkers = 16
	pipelineBuffers = 2 * pipelineWorkers
	pipelineWindow  = 1024      // messages between reader and collector
	deliverBatchMax = 256       // messages per commit
	maxBuffered     = 256 << 10 // larger messages stream to their blob
)

type job struct {
	seq   int64
	mbID  int64
	flags []string
	date  time.Time
	buf   *bytes.Buffer     // the message, or
	bw    *store.BlobWriter // a blob already holding it
}

type done struct {
	seq int64
	d   *store.Delivery
	err error
}

type pipeline struct {
	st      *store.Store
	acct    store.Account
	ignoreQ bool
	ctx     context.Context
	cancel  context.CancelCauseFunc
	bufs    chan *bytes.Buffer
	jobs    chan job
	results chan done
	synced  chan syncedBatch
	window  chan struct{}
	workers sync.WaitGroup
	coll    sync.WaitGroup
	seq     int64
	stats   Stats // written by the collector; read after wait
}

func newPipeline(ctx context.Context, st *store.Store, acct store.Account, ignoreQuota bool) *pipeline {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &pipeline{
		st: st, acct: acct, ignoreQ: ignoreQuota, ctx: ctx, cancel: cancel,
		bufs:    make(chan *bytes.Buffer, pipelineBuffers),
		jobs:    make(chan job, pipelineBuffers),
		results: make(chan done, pipelineWindow), // never blocks a worker
		synced:  make(chan syncedBatch, 1),
		window:  make(chan struct{}, pipelineWindow),
	}
	for range pipelineBuffers {
		p.bufs <- new(bytes.Buffer)
	}
	for range pipelineWorkers {
		p.workers.Add(1)
		go p.worker()
	}
	p.coll.Add(2)
	go p.collector()
	go p.storer()
	return p
}

// submit reads one message from body and hands it to the pipeline. It
// blocks while the pipeline is full.
func (p *pipeline) submit(mbID int64, flags []string, date time.Time, body io.Reader) error {
	var buf *bytes.Buffer
	select {
	case p.window <- struct{}{}:
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	}
	select {
	case buf = <-p.bufs:
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	}
	j := job{mbID: mbID, flags: flags, date: date, buf: buf}
	n, err := io.CopyN(buf, body, maxBuffered+1)
	if err != nil && err != io.EOF {
		p.putBuf(buf)
		return err
	}
	if n > maxBuffered {
		// Too big to hold: stream it into its blob here.
		bw, err := p.st.NewBlob()
		if err == nil {
			_, err = bw.Write(buf.Bytes())
		}
		p.putBuf(buf)
		if err == nil {
			_, err = io.Copy(bw, body)
		}
		if err != nil {
			if bw != nil {
				bw.Abort()
			}
			return err
		}
		j.buf, j.bw = nil, bw
	}
	j.seq = p.seq
	p.seq++
	select {
	case p.jobs <- j:
		return nil
	case <-p.ctx.Done():
		p.release(j)
		return context.Cause(p.ctx)
	}
}

// putBuf returns a buffer to the pool, replacing one grown large.
func (p *pipeline) putBuf(b *bytes.Buffer) {
	if b.Cap() > 2*maxBuffered {
		b = new(bytes.Buffer)
	}
	b.Reset()
	p.bufs <- b
}

// release drops a job that will not be stored.
func (p *pipeline) release(j job) {
	if j.buf != nil {
		p.putBuf(j.buf)
	}
	if j.bw != nil {
		j.bw.Abort()
	}
}

// wait ends the pipeline once everything submitted is stored, and returns
// the first error.
func (p *pipeline) wait() (Stats, error) {
	close(p.jobs)
	p.workers.Wait()
	close(p.results)
	p.coll.Wait()
	err := context.Cause(p.ctx)
	p.cancel(nil)
	return p.stats, err
}

func (p *pipeline) worker() {
	defer p.workers.Done()
	for j := range p.jobs {
		if p.ctx.Err() != nil {
			p.release(j)
			p.results <- done{seq: j.seq, err: context.Cause(p.ctx)}
			continue
		}
		d, err := p.prepare(j)
		p.results <- done{seq: j.seq, d: d, err: err}
	}
}

// prepare writes and parses a message. There is no fsync here: the
// collector makes a whole batch durable at once before storing it.
func (p *pipeline) prepare(j job) (*store.Delivery, error) {
	var parsed *message.Parsed
	bw := j.bw
	var err error
	if j.buf != nil {
		defer p.putBuf(j.buf)
		if bw, err = p.st.NewBlob(); err != nil {
			return nil, err
		}
		if _, err = bw.Write(j.buf.Bytes()); err != nil {
			bw.Abort()
			return nil, err
		}
		if parsed, err = message.Parse(bytes.NewReader(j.buf.Bytes())); err != nil {
			bw.Abort()
			return nil, err
		}
	}
	blob, err := bw.CommitUnsynced()
	if err != nil {
		return nil, err
	}
	if parsed == nil {
		f, err := p.st.OpenBlob(blob.ID)
		if err == nil {
			parsed, err = message.Parse(f)
			f.Close()
		}
		if err != nil {
			p.st.DiscardBlob(p.ctx, blob.ID)
			return nil, err
		}
	}
	return &store.Delivery{
		Blob: blob, Parsed: parsed, InternalDate: j.date,
		Targets:     []store.Target{{AccountID: p.acct.ID, MailboxID: j.mbID, Flags: j.flags}},
		IgnoreQuota: p.ignoreQ, SkipDuplicate: true,
	}, nil
}

// collector restores source order, gathers batches and makes their
// blobs durable; the storer commits them. The two overlap: one batch is
// synced while the one before is being committed.
func (p *pipeline) collector() {
	defer p.coll.Done()
	defer close(p.synced)
	pending := map[int64]done{}
	var next int64
	var batch []done
	take := func(r done) {
		pending[r.seq] = r
		for {
			r, ok := pending[next]
			if !ok {
				return
			}
			delete(pending, next)
			next++
			batch = append(batch, r)
		}
	}
	for r := range p.results {
		take(r)
	drain:
		for len(batch) < deliverBatchMax {
			select {
			case r, ok := <-p.results:
				if !ok {
					break drain
				}
				take(r)
			default:
				break drain
			}
		}
		for len(batch) > 0 {
			n := min(len(batch), deliverBatchMax)
			p.synced <- p.sync(batch[:n])
			batch = batch[n:]
		}
		batch = nil
	}
}

// syncedBatch is a batch whose blobs are durable (unless err).
type syncedBatch struct {
	items []done
	err   error
}

// sync makes the blobs of a batch durable.
func (p *pipeline) sync(items []done) syncedBatch {
	var ids []string
	for _, r := range items {
		if r.err == nil {
			ids = append(ids, r.d.Blob.ID)
		}
	}
	return syncedBatch{items: items, err: p.st.SyncBlobs(ids)}
}

func (p *pipeline) storer() {
	defer p.coll.Done()
	for b := range p.synced {
		p.store(b)
	}
}

// store delivers a batch in order and releases its window slots.
func (p *pipeline) store(b syncedBatch) {
	defer func() {
		for range b.items {
			<-p.window
		}
	}()
	discard := func(ds []*store.Delivery) {
		for _, d := range ds {
			p.st.DiscardBlob(context.Background(), d.Blob.ID)
		}
	}
	var ds []*store.Delivery
	for _, r := range b.items {
		if r.err != nil {
			p.fail(r.err)
		} else {
			ds = append(ds, r.d)
		}
	}
	if b.err != nil {
		p.fail(b.err)
	}
	if len(ds) == 0 {
		return
	}
	if p.ctx.Err() != nil {
		discard(ds)
		return
	}
	res, err := p.st.DeliverBatch(p.ctx, ds)
	if err != nil {
		discard(ds)
		p.fail(err)
		return
	}
	for i, d := range ds {
		switch err := res[i][0].Err; {
		case err == nil:
			p.stats.Messages++
			p.stats.Bytes += d.Blob.Size
		case errors.Is(err, store.ErrExists):
			p.stats.Duplicates++
			p.st.DiscardBlob(context.Background(), d.Blob.ID)
		default:
			p.st.DiscardBlob(context.Background(), d.Blob.ID)
			p.fail(fmt.Errorf("storing message: %w", err))
		}
	}
}

func (p *pipeline) fail(err error) {
	if p.ctx.Err() == nil {
		p.cancel(err)
	}
}
