// Command mkdemo writes the quick start's demo capture:
//
//	go run ./internal/demogen/mkdemo testdata/demo.pcap
package main

import (
	"fmt"
	"os"

	"github.com/egresswatch/egresswatch/internal/demogen"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkdemo FILE")
		os.Exit(2)
	}
	if err := write(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkdemo:", err)
		os.Exit(1)
	}
}

func write(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := demogen.Write(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
