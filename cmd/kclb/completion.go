package main

import (
	"fmt"
	"io"

	"github.com/kclb/kclb/internal/cmdline"
)

// cmdCompletion prints the completion script for a shell.
func cmdCompletion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("completion", stderr, "bash|zsh|fish")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	if err := cmdline.Completion(stdout, fs.Arg(0), commands()); err != nil {
		fmt.Fprintf(stderr, "kclb completion: %v\n", err)
		return errUsage
	}
	return nil
}

// cmdManpage prints kclb(1) in roff (man) format.
func cmdManpage(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("manpage", stderr, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	cmdline.Manpage(stdout, commands(), version, cmdline.ManDate())
	return nil
}
