package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadSyntax: the syntax-only load reads no file the configuration
// names (issue 15: `kclb check --syntax-only` on a workstation where the
// certificates do not exist), yet still reports every other problem with
// its line.
func TestLoadSyntax(t *testing.T) {
	dir := t.TempDir()
	files := base + `[[listener]]
name = "https"
bind = "127.0.0.1:8443"
tls = true

[[tls.certificate]]
cert = "/nonexistent/kc.crt"
key = "/nonexistent/kc.key"

[affinity]
secret_file = "/nonexistent/affinity.key"

[admin]
tcp = "127.0.0.1:9100"
token_file = "/nonexistent/token"

[health]
scheme = "https"
ca_file = "/nonexistent/ca.pem"
token_client_id = "probe"
token_secret_file = "/nonexistent/probe.secret"
`
	path := filepath.Join(dir, "kclb.toml")
	if err := os.WriteFile(path, []byte(files), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Fatal("Load accepted a configuration whose files do not exist")
	}
	c, err := LoadSyntax(path)
	if err != nil {
		t.Fatalf("LoadSyntax: %v", err)
	}
	if c.Path != path || c.TLS.Certificates[0].Cert != "/nonexistent/kc.crt" {
		t.Errorf("LoadSyntax result: path %q, certificates %v", c.Path, c.TLS.Certificates)
	}

	bad := files + "\n[timeouts]\nconnect = \"soon\"\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSyntax(path)
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.Problems) != 1 || errs.Problems[0].Path != "timeouts.connect" ||
		errs.Problems[0].Line != strings.Count(files, "\n")+3 {
		t.Fatalf("LoadSyntax of a bad file: %v (%#v)", err, errs)
	}
}
