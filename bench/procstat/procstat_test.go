package procstat

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOwnProcess(t *testing.T) {
	pid := os.Getpid()
	c0, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn measurable CPU: at least 3 clock ticks.
	deadline := time.Now().Add(10 * time.Second)
	var c1 time.Duration
	x := 1
	for time.Now().Before(deadline) {
		for i := range 1000000 {
			x = x*31 + i
		}
		if c1, err = CPU(pid); err != nil {
			t.Fatal(err)
		}
		if c1-c0 >= 3*time.Second/ClockTicks {
			break
		}
	}
	if c1-c0 < 3*time.Second/ClockTicks {
		t.Fatalf("CPU did not advance: %v -> %v (x=%d)", c0, c1, x)
	}
	rss, err := RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 1<<34 {
		t.Fatalf("RSS of the test process = %d bytes, implausible", rss)
	}
	g := Group{Root: pid}
	if g.RSS() <= 0 || g.CPU() < c1 {
		t.Fatalf("Group: rss %d cpu %v", g.RSS(), g.CPU())
	}
}

func TestChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("needs sleep(1): ", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, cmd.Process.Pid) {
		t.Fatalf("children %v lack %d", kids, cmd.Process.Pid)
	}
	g := Group{Root: os.Getpid(), WithChildren: true}
	if len(g.pids()) < 2 {
		t.Fatalf("group pids %v", g.pids())
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{name: "plain", in: "42 (haproxy) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 2 0 100 1000 10 18446744073709551615", want: 3 * time.Second},
		{name: "comm with spaces and parens", in: "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 1 1 1", want: 30 * time.Millisecond},
		{name: "no comm", in: "7 a R 1", wantErr: true},
		{name: "truncated", in: "7 (x) R 1 2 3", wantErr: true},
		{name: "not a number", in: "42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 zz 50 0", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{name: "present", in: "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads: 3\n", want: 2048 * 1024},
		{name: "absent", in: "Name:\tkthreadd\nState:\tS\n", want: 0},
		{name: "bad unit", in: "VmRSS:\t12 MB\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatusRSS([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %d, %v; want %d, err %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestReadMachine(t *testing.T) {
	m := ReadMachine()
	if m.NumCPU < 1 || m.GoVersion == "" || m.Kernel == "?" || len(strings.Fields(m.LoadAvg)) != 3 {
		t.Fatalf("machine %+v", m)
	}
	if got := ParseCPUModel([]byte("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n")); got != "AMD EPYC 7B13" {
		t.Fatalf("ParseCPUModel = %q", got)
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("42 (haproxy) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 2 0"))
	f.Add([]byte("1 ()) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU %v", d)
		}
	})
}

func FuzzParseStatusRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t    2048 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseStatusRSS(b)
	})
}
