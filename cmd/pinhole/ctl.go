package main
import ("io")
func ctl(args []string, stdin io.Reader, stdout, stderr io.Writer) int { return 2 }
