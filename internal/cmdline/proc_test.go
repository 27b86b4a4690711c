package cmdline

import "testing"

// TestIsKclbRun: which /proc cmdlines count as a live kclb for
// cleanup-vips (issue 17, item 6a).
func TestIsKclbRun(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    bool
	}{
		{"installed", "/usr/local/bin/kclb\x00run\x00-c\x00/etc/kclb/config.toml\x00", true},
		{"upgrade binary", "/usr/local/bin/kclb.new\x00run\x00", true},
		{"relative", "kclb\x00run\x00", true},
		{"cleanup itself", "/usr/local/bin/kclb\x00cleanup-vips\x00-c\x00x\x00", false},
		{"status", "kclb\x00status\x00", false},
		{"other program", "/usr/sbin/keepalived\x00run\x00", false},
		{"argument named kclb", "sh\x00kclb\x00run\x00", false},
		{"empty", "", false},
		{"no arguments", "kclb\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsKclbRun([]byte(tt.cmdline)); got != tt.want {
				t.Errorf("IsKclbRun(%q) = %v, want %v", tt.cmdline, got, tt.want)
			}
		})
	}
}

// FuzzIsKclbRun: any bytes are a cmdline the parser survives.
func FuzzIsKclbRun(f *testing.F) {
	f.Add([]byte("/usr/local/bin/kclb\x00run\x00-c\x00/etc/kclb/config.toml\x00"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) { IsKclbRun(b) })
}
