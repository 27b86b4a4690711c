package reliability

import (
	"os"
	"os/exec"
	"testing"
)

// stdlibH2Env, set to 1, makes startLB serve HTTP/2 with net/http's
// server instead of kclb's own.
const stdlibH2Env = "KCLB_RELIABILITY_STDLIB_H2"

// TestH2SuiteOnStdlibServer runs the HTTP/2 abuse, smuggling and edge
// tests a second time against net/http's HTTP/2 server, which
// listener.stdlib_http2 puts back: the fallback keeps the limits the
// default server is held to. It re-runs this test binary with
// stdlibH2Env set.
func TestH2SuiteOnStdlibServer(t *testing.T) {
	if os.Getenv(stdlibH2Env) != "" {
		t.Skip("already on net/http's HTTP/2 server")
	}
	args := []string{"-test.run", "^(TestH2|TestSmugglingHTTP2$|TestPathPolicyEncodingsHTTP2$)", "-test.count=1"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), stdlibH2Env+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("HTTP/2 tests on net/http's server: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}
