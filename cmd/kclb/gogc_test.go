package main

import (
	"os"
	"strings"
	"testing"
)

// TestGCTarget: kclb runs with a garbage collection target of 200
// (defaultGCPercent) unless the environment sets GOGC, which wins; the
// target in effect is logged at start.
func TestGCTarget(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set in the test's environment")
	}
	e := newEnv(t, envOptions{nodes: 1, noProc: true})
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "gogc=200"},
		{[]string{"GOGC=50"}, "gogc=50"},
	} {
		p := startKclbEnv(t, e.cfgPath, 2, tc.env)
		found := ""
		for _, l := range p.Logs() {
			if strings.Contains(l, "garbage collection target") {
				found = l
			}
		}
		if !strings.Contains(found, tc.want) {
			t.Errorf("env %v: log line %q, want %s", tc.env, found, tc.want)
		}
		p.cmd.Process.Kill() // the next start takes the same ports
		<-p.done
	}
}
