package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kclb/kclb/importer"
)

func init() {
	extraCommands["import"] = cmdImport
}

// cmdImport translates haproxy.cfg [keepalived.conf] into a kclb
// configuration: `kclb import [-o FILE] [-f] haproxy.cfg [keepalived.conf]`.
// The configuration goes to stdout or FILE, each warning to stderr.
func cmdImport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import", stderr, "haproxy.cfg [keepalived.conf] [-o FILE] [--force]")
	out := fs.String("o", "", "write the configuration to `FILE` instead of stdout")
	var force bool
	fs.BoolVar(&force, "force", false, "overwrite FILE if it exists")
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
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
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
	fmt.Fprintf(stderr, "wrote %s (%d warnings); check it with: kclb check -c %s\n", *out, len(res.Warnings), *out)
	return nil
}
