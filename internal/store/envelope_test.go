package store

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/tern-mail/tern/internal/message"
	"github.com/tern-mail/tern/internal/testutil"
)

// checkEnvelope compares decodeEnvelope with encoding/json on raw: when
// the fast decoder accepts the bytes, it must agree.
func checkEnvelope(t *testing.T, raw []byte) bool {
	t.Helper()
	got, ok := decodeEnvelope(raw)
	if !ok {
		return false
	}
	var want envelopeOnly
	if err := json.Unmarshal(raw, &want); err != nil {
		return true // the fast decoder stops after the envelope
	}
	if !reflect.DeepEqual(got, want.Envelope) {
		t.Errorf("decodeEnvelope(%s)\n = %+v\nwant %+v", raw, got, want.Envelope)
	}
	return true
}

func TestDecodeEnvelope(t *testing.T) {
	for _, raw := range []string{
		`{"env":{},"body":{"type":"text","sub":"plain"}}`,
		`{"env":{"date":"Fri, 1 Mar 2024","subject":"a \"q\" \\ \u00e9 \u0026 \/ \t","from":[{"name":"N","mailbox":"m","host":"h"}],"to":[{"mailbox":"g","gs":true},{"ge":true}],"cc":[],"messageId":"<x@y>"}}`,
		` { "env" : { "subject" : "x" , "inReplyTo" : "<a@b>" } , "preview":"p"}`,
		`{"env":{"subject":"caf` + "\u00e9" + `","bcc":[{"adl":"@r","mailbox":"b","host":"c"}],"sender":[{}],"replyTo":[{"name":"x"}]}}`,
	} {
		if !checkEnvelope(t, []byte(raw)) {
			t.Errorf("decodeEnvelope refused %s", raw)
		}
	}
	for _, raw := range []string{
		``, `{}`, `{"body":{},"env":{}}`, `{"env":{"Subject":"x"}}`, `{"env":{"subject":"\ud83d\ude00"}}`,
		"{\"env\":{\"subject\":\"\xff\"}}", `{"env":{"subject":"x"`, `{"env":{"from":[{"gs":1}]}}`, `{"env":{"to":null}}`,
	} {
		if _, ok := decodeEnvelope([]byte(raw)); ok {
			t.Errorf("decodeEnvelope accepted %q", raw)
		}
	}
}

// TestDecodeEnvelopeCorpus: on every corpus message as delivery stores it,
// the fast decoder accepts the bytes and agrees with encoding/json.
func TestDecodeEnvelopeCorpus(t *testing.T) {
	files := testutil.CorpusFiles(t)
	if testing.Short() {
		files = files[:500]
	}
	refused := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := message.Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if !checkEnvelope(t, raw) {
			refused++
		}
	}
	// Invalid UTF-8 becomes \ufffd escapes, which the fast path accepts;
	// only surrogate escapes send a message to encoding/json.
	if refused > len(files)/100 {
		t.Errorf("fast decoder refused %d of %d messages", refused, len(files))
	}
	t.Logf("fast decoder refused %d of %d messages", refused, len(files))
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"env":{"subject":"a\u00e9\n","from":[{"name":"N","mailbox":"m","host":"h","gs":true}]}}`))
	f.Add([]byte(`{"env":{"date":"d","to":[{"ge":false}],"messageId":"<x>"},"body":{}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkEnvelope(t, raw)
	})
}
