package message

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"

	"github.com/tern-mail/tern/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenMessages are corpus messages whose Parse result is kept in
// testdata/golden: plain, multipart/alternative, nested rfc822, digests,
// base64 and quoted-printable, HTML-only spam, broken headers. Several were
// checked by hand against Dovecot 2.3's BODYSTRUCTURE (see
// imapfmt_test.go), which matched on sizes, line counts and structure.
var goldenMessages = []string{
	"easy-ham-1/00001.7c53336b37003a9286aba55d2945844c.txt",
	"easy-ham-1/00030.cc78e84cd398ff4a2e9e287263de928f.txt",
	"easy-ham-1/00120.4de6f88fbcb22a39a0498f84d9ce358b.txt",
	"easy-ham-1/01294.8c242aa8998042dd666b7f9db56a6a3e.txt",
	"easy-ham-1/01636.07c82f37d072bce96820af0bbef80eff.txt",
	"easy-ham-2/00020.83ef024f76cc42b8245a683ed9b38406.txt",
	"easy-ham-2/01277.d7a43a4dd78dc466c8808f370ae2b2bb.txt",
	"easy-ham-2/01317.7fc86413a091430c3104b041a6525131.txt",
	"easy-ham-2/01324.23a1f5017a5531fca08d9ebe2f5b0537.txt",
	"hard-ham-1/00030.81e02cde7ddb4986b99b38a31ef8cf9a.txt",
	"hard-ham-1/00060.bb5f0a4bb14bf8126f7024c538c22c92.txt",
	"hard-ham-1/00199.a69d994a7a76f49be4f4e8b839adc00a.txt",
	"spam-1/00020.29725cf331fc21e18a1809e7d8b27332.txt",
	"spam-1/00136.faa39d8e816c70f23b4bb8758d8a74f0.txt",
	"spam-1/00296.0087354f4bb7c4e756124632a4a7e80a.txt",
	"spam-2/00022.be66c630a142f0d862c2294a2d911ce1.txt",
	"spam-2/00038.906d76babc3d78d6294c71b1b52d4d7f.txt",
	"spam-2/00204.4cf15f97b8ea08bfafab7d5091b8fbe7.txt",
	"spam-2/01359.deafa1d42658c6624c6809a446b7f369.txt",
	"spam-2/00604.3dcf5f835dacff5d4a32a24eba31cbd2.txt",
}

func TestGolden(t *testing.T) {
	dir := testutil.CorpusDir(t)
	for _, name := range goldenMessages {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			m := mustParse(t, raw)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(m); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := filepath.Join("testdata", "golden", strings.ReplaceAll(strings.TrimSuffix(name, ".txt"), "/", "_")+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run go test -update and review the diff):\n%s", name, golden, got)
			}
		})
	}
}

// TestCorpus parses every corpus message and checks the invariants; the
// leaves are also decoded, which must never fail.
func TestCorpus(t *testing.T) {
	files := testutil.CorpusFiles(t)
	if testing.Short() {
		files = files[:len(files)/10]
	}
	var bytesTotal int64
	start := time.Now()
	withPreview := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bytesTotal += int64(len(raw))
		m, err := Parse(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := checkParsed(raw, m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if m.Preview != "" {
			withPreview++
		}
		if err := decodeLeaves(raw, m.Structure); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	t.Logf("%d messages, %d bytes, %d with a preview, %v", len(files), bytesTotal, withPreview, time.Since(start))
	if withPreview < len(files)*9/10 {
		t.Errorf("only %d of %d messages have a preview", withPreview, len(files))
	}
}

func decodeLeaves(raw []byte, p *Part) error {
	switch {
	case p.Type == "multipart":
		for _, c := range p.Parts {
			if err := decodeLeaves(raw, c); err != nil {
				return err
			}
		}
		return nil
	case isMessageType(p):
		return decodeLeaves(raw, p.Message)
	}
	_, err := DecodedText(bytes.NewReader(raw), p, 1<<20)
	return err
}

// loadCorpus reads the corpus into memory without the mbox "From " line
// each file starts with, as the messages would be delivered.
func loadCorpus(b *testing.B) ([][]byte, int64) {
	files := testutil.CorpusFiles(b)
	msgs := make([][]byte, len(files))
	var total int64
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		if j := bytes.IndexByte(raw, '\n'); bytes.HasPrefix(raw, []byte("From ")) && j >= 0 {
			raw = raw[j+1:]
		}
		msgs[i] = raw
		total += int64(len(raw))
	}
	return msgs, total
}

// BenchmarkParseCorpus measures parsing throughput over the whole corpus,
// held in memory; it reports messages per second and MB/s.
func BenchmarkParseCorpus(b *testing.B) {
	msgs, total := loadCorpus(b)
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, raw := range msgs {
			if _, err := Parse(bytes.NewReader(raw)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(msgs))*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkGoMessageCorpus is a reference for BenchmarkParseCorpus, in the
// same run: go-message reading every message and walking every part (it
// decodes transfer encodings, which Parse does not do beyond the preview).
func BenchmarkGoMessageCorpus(b *testing.B) {
	msgs, total := loadCorpus(b)
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, raw := range msgs {
			e, err := gomessage.Read(bytes.NewReader(raw))
			if e == nil {
				b.Fatal(err)
			}
			_ = e.Walk(func(_ []int, part *gomessage.Entity, err error) error {
				if err == nil && part.MultipartReader() == nil {
					_, _ = io.Copy(io.Discard, part.Body)
				}
				return nil
			})
		}
	}
	b.ReportMetric(float64(len(msgs))*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
