// Package rfc4475 loads the RFC 4475 SIP torture messages kept in
// test/hostile/testdata/rfc4475 with the verdict each must get, for the
// strict-parsing unit tests and the hostile-input suite.
package rfc4475

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Case is one torture message and the status it must get over UDP (0: not
// refused as malformed).
type Case struct {
	Name   string
	Status int
	Msg    []byte
}

// Dir is the directory of the messages.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "hostile", "testdata", "rfc4475")
}

// Load reads every case listed in VERDICTS.
func Load() ([]Case, error) {
	dir := Dir()
	f, err := os.Open(filepath.Join(dir, "VERDICTS"))
	if err != nil {
		return nil, fmt.Errorf("rfc4475 verdicts: %w", err)
	}
	defer f.Close()
	var out []Case
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, code, ok := strings.Cut(line, " ")
		status, err := strconv.Atoi(code)
		if !ok || err != nil {
			return nil, fmt.Errorf("rfc4475 verdicts: bad line %q", line)
		}
		msg, err := os.ReadFile(filepath.Join(dir, name+".dat"))
		if err != nil {
			return nil, fmt.Errorf("rfc4475 %s: %w", name, err)
		}
		out = append(out, Case{Name: name, Status: status, Msg: msg})
	}
	return out, sc.Err()
}
