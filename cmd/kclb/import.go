package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kclb/kclb/internal/importer"
)

// cmdImport translates haproxy.cfg [keepalived.conf] into a kclb
// configuration: `kclb import haproxy.cfg [keepalived.conf] [-o FILE] [--force]`.
// Every message goes to stderr with its line and severity. When a line
// could not be translated (an error) nothing is written and the exit
// status is 1, unless --force: then the configuration is written with
// the untranslated lines as comments at its top.
func cmdImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", stderr, "haproxy.cfg [keepalived.conf] [-o FILE] [--force]")
	out := fs.String("o", "", "write the configuration to `FILE` instead of stdout")
	var force bool
	fs.BoolVar(&force, "force", false, "write the configuration although some lines could not be translated (they become comments at its top), and overwrite FILE")
	fs.BoolVar(&force, "f", false, "short for --force")
	// Flags may also follow the file names.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) < 1 || len(files) > 2 {
		fs.Usage()
		return errUsage
	}
	hap, err := os.ReadFile(files[0])
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	var ka *importer.Source
	if len(files) == 2 {
		data, err := os.ReadFile(files[1])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		ka = &importer.Source{Name: files[1], Data: data}
	}
	res, err := importer.Import(importer.Source{Name: files[0], Data: hap}, ka)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	counts := map[importer.Severity]int{}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, w)
		counts[w.Severity]++
	}
	summary := fmt.Sprintf("%d errors (lines not translated), %d warnings (translated with a change), %d notes (nothing to do)",
		counts[importer.Error], counts[importer.Warn], counts[importer.Note])
	if counts[importer.Error] > 0 && !force {
		return fmt.Errorf("import: %s; nothing written: act on the errors, or use --force to write the configuration with those lines as comments", summary)
	}
	if *out == "" {
		_, err := stdout.Write(res.Config)
		return err
	}
	// The file may hold the VRRP password: readable by owner and group only.
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(*out, flags, 0o640)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("import: %s exists (use --force to overwrite)", *out)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if _, err := f.Write(res.Config); err != nil {
		f.Close()
		return fmt.Errorf("import: write %s: %w", *out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("import: write %s: %w", *out, err)
	}
	fmt.Fprintf(stderr, "wrote %s: %s; check it with: kclb check %s\n", *out, summary, *out)
	return nil
}
