package main

//go:generate go run . -o ../../layout.h

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	out := flag.String("o", "pyext/layout.h", `output file ("-": standard output)`)
	flag.Parse()
	text, err := Header()
	if err != nil {
		fmt.Fprintln(os.Stderr, "layoutgen:", err)
		os.Exit(1)
	}
	if *out == "-" {
		_, err = os.Stdout.Write(text)
	} else {
		err = os.WriteFile(*out, text, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "layoutgen:", err)
		os.Exit(1)
	}
}
