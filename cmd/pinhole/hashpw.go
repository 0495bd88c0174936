package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// hashPassword implements `pinhole hash-password -realm R -user U`: it
// reads the password from stdin (first line) and prints the HA1 values to
// paste into the users file, so that plaintext never needs to be stored.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	realm := fs.String("realm", "", "Digest realm (registrar.auth.realm)")
	user := fs.String("user", "", "username")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *realm == "" || *user == "" {
		fmt.Fprintln(stderr, "usage: pinhole hash-password -realm R -user U  (password on stdin)")
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintln(stderr, "read password:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "empty password on stdin")
		return 1
	}
	ha1 := auth.HashPassword(*realm, *user, pw)
	algs := make([]string, 0, len(ha1))
	for a := range ha1 {
		algs = append(algs, a)
	}
	sort.Strings(algs)
	fmt.Fprintf(stdout, "  - username: %s\n    ha1:\n", *user)
	for _, a := range algs {
		fmt.Fprintf(stdout, "      %s: %s\n", a, ha1[a])
	}
	return 0
}
