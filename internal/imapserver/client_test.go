package imapserver

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestClientMailboxes covers CREATE, LIST, STATUS, RENAME, SUBSCRIBE and
// DELETE through the go-imap client.
func TestClientMailboxes(t *testing.T) {
	ts := newTestServer(t)
	c := ts.client()
	if err := c.Create("Lists/go-nuts", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Übersicht", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, UIDNext: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*imap.ListData{}
	for _, l := range list {
		names[l.Mailbox] = l
	}
	for _, want := range []string{"INBOX", "Sent", "Lists", "Lists/go-nuts", "Übersicht"} {
		if names[want] == nil {
			t.Errorf("LIST misses %q (got %v)", want, names)
		}
	}
	if l := names["Übersicht"]; l == nil || !hasAttr(l.Attrs, imap.MailboxAttrFlagged) || l.Status == nil || *l.Status.NumMessages != 0 {
		t.Errorf("Übersicht: %+v", l)
	}
	if err := c.Rename("Lists", "Groups", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Groups/go-nuts").Wait(); err != nil {
		t.Fatal(err)
	}
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	found := false
	for _, l := range subs {
		found = found || l.Mailbox == "Groups/go-nuts"
		if !hasAttr(l.Attrs, imap.MailboxAttrSubscribed) || l.Mailbox == "Groups" {
			t.Errorf("subscribed list entry %+v", l)
		}
	}
	if err != nil || !found {
		t.Errorf("subscribed: Groups/go-nuts missing, %v", err)
	}
	ts.deliver("INBOX", testMsg("count me", "x"))
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true, Size: true, HighestModSeq: true}).Wait()
	if err != nil || *st.NumMessages != 1 || *st.NumUnseen != 1 || *st.Size == 0 || st.HighestModSeq == 0 {
		t.Errorf("status %+v, %v", st, err)
	}
	if err := c.Delete("Groups/go-nuts").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Nope").Wait(); err == nil {
		t.Error("DELETE of a missing mailbox succeeded")
	}
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if x == a {
			return true
		}
	}
	return false
}

// TestClientMessages covers APPEND, STORE, COPY, MOVE, EXPUNGE and quota.
func TestClientMessages(t *testing.T) {
	ts := newTestServer(t)
	c := ts.client()
	msg := testMsg("appended", "hello")
	app := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}})
	app.Write([]byte(msg))
	app.Close()
	ad, err := app.Wait()
	if err != nil || ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("append: %+v, %v", ad, err)
	}
	ts.deliver("INBOX", testMsg("second", "x"))
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.DestUIDs.String() != "1:2" {
		t.Fatalf("copy: %+v, %v", cd, err)
	}
	md, err := c.Move(imap.UIDSetNum(2), "Trash").Wait()
	if err != nil || md.DestUIDs.String() != "1" {
		t.Fatalf("move: %+v, %v", md, err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("after MOVE %d messages", n)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, UID: true}).Collect()
	if err != nil || len(msgs) != 1 || !hasFlag(flagStrings(msgs[0].Flags), "$Work") || !hasFlag(flagStrings(msgs[0].Flags), `\Draft`) {
		t.Fatalf("fetch flags: %+v, %v", msgs, err)
	}
	c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	exp, err := c.Expunge().Collect()
	if err != nil || len(exp) != 1 || exp[0] != 1 {
		t.Fatalf("expunge %v, %v", exp, err)
	}
	// Quota: RFC 9208 NO [OVERQUOTA].
	if err := ts.st.SetQuota(context.Background(), "alice@example.org", 1); err != nil {
		t.Fatal(err)
	}
	app = c.Append("INBOX", int64(len(msg)), nil)
	app.Write([]byte(msg))
	app.Close()
	if _, err := app.Wait(); err == nil || !strings.Contains(err.Error(), "OVERQUOTA") && !strings.Contains(err.Error(), "quota") {
		t.Errorf("append over quota: %v", err)
	}
}

func flagStrings(f []imap.Flag) []string {
	out := make([]string, len(f))
	for i, x := range f {
		out[i] = string(x)
	}
	return out
}

// TestClientSearch covers SEARCH, ESEARCH, SORT and THREAD.
func TestClientSearch(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver("INBOX", testMsg("zebra", "striped"))
	ts.deliver("INBOX", testMsg("apple", "red fruit"), `\Seen`)
	ts.deliver("INBOX", testMsg("Re: zebra", "more stripes"))
	c := ts.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sd, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}, Text: []string{"stripe"}}, nil).Wait()
	if err != nil || len(sd.AllSeqNums()) != 2 {
		t.Fatalf("search: %+v, %v", sd, err)
	}
	sd, err = c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "apple"}}},
		&imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || sd.Count != 1 || sd.Min != 2 || sd.Max != 2 {
		t.Fatalf("esearch: %+v, %v", sd, err)
	}
	sorted, err := c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{},
		SortCriteria: []imapclient.SortCriterion{{Key: imapclient.SortKeySubject}}}).Wait()
	if err != nil || len(sorted) != 3 || sorted[0] != 2 {
		t.Fatalf("sort: %v, %v", sorted, err)
	}
	threads, err := c.Thread(&imapclient.ThreadOptions{Algorithm: imap.ThreadOrderedSubject, SearchCriteria: &imap.SearchCriteria{}}).Wait()
	if err != nil || len(threads) != 2 {
		t.Fatalf("thread: %+v, %v", threads, err)
	}
}

// TestIdlePush measures that IDLE reports a delivery within one second,
// with a second session changing flags and expunging meanwhile.
func TestIdlePush(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver("INBOX", testMsg("old", "x"))
	var mu sync.Mutex
	events := make(chan string, 10)
	c := ts.clientWith(&imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				events <- "exists"
			}
		},
		Expunge: func(seq uint32) { events <- "expunge" },
		Fetch:   func(*imapclient.FetchMessageData) { events <- "fetch" },
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string) time.Duration {
		start := time.Now()
		select {
		case e := <-events:
			if e != what {
				t.Fatalf("got %s, want %s", e, what)
			}
		case <-time.After(time.Second):
			t.Fatalf("no %s within 1s", what)
		}
		return time.Since(start)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	start := time.Now()
	ts.deliver("INBOX", testMsg("new", "y"))
	wait("exists")
	t.Logf("IDLE push latency: %v", time.Since(start))
	mu.Unlock()
	c2 := ts.client()
	c2.Select("INBOX", nil).Wait()
	c2.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	wait("fetch")
	c2.Expunge().Close()
	wait("expunge")
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("after IDLE: %d messages", n)
	}
}

func TestThreadReferences(t *testing.T) {
	ts := newTestServer(t)
	msg := func(id, date, subject, refs string) string {
		h := "From: x@example.net\r\nSubject: " + subject + "\r\nDate: " + date + "\r\nMessage-ID: <" + id + "@x>\r\n"
		if refs != "" {
			h += "References: " + refs + "\r\n"
		}
		return h + "\r\nbody\r\n"
	}
	ts.deliver("INBOX", msg("a", "Mon, 1 Jan 2024 10:00:00 +0000", "plan", ""))
	ts.deliver("INBOX", msg("d", "Mon, 1 Jan 2024 10:30:00 +0000", "other", ""))
	ts.deliver("INBOX", msg("b", "Mon, 1 Jan 2024 11:00:00 +0000", "Re: plan", "<a@x>"))
	ts.deliver("INBOX", msg("c", "Mon, 1 Jan 2024 12:00:00 +0000", "Re: plan", "<a@x> <b@x>"))
	ts.deliver("INBOX", msg("e", "Mon, 1 Jan 2024 12:30:00 +0000", "Re: plan", "<a@x>"))
	r := ts.raw()
	r.login()
	r.expectOK("s", "SELECT INBOX")
	lines := r.expectOK("t", "THREAD REFERENCES UTF-8 ALL")
	if lines[0] != "* THREAD (1 (3 4)(5))(2)" {
		t.Errorf("THREAD REFERENCES: %q", lines)
	}
	lines = r.expectOK("u", "UID THREAD ORDEREDSUBJECT UTF-8 ALL")
	if lines[0] != "* THREAD (1 (3)(4)(5))(2)" {
		t.Errorf("THREAD ORDEREDSUBJECT: %q", lines)
	}
}
