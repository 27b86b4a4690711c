package main

import (
	"encoding/csv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kclb/kclb/internal/admin"
)

// TestStatsPageDetail pins the stats page of issue 15, item 8 through
// the real binary and headless Chromium: per-server response codes,
// bytes, downtime and check history, a totals row, the failure reason
// shown once, no cryptic "13✓/0✗", a CSV export with a TOTAL row, and
// screenshots at 1280 and 390 px wide (kept in $KCLB_TEST_ARTIFACTS).
func TestStatsPageDetail(t *testing.T) {
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("needs chromium (apt-get install chromium)")
	}
	a := newAdminEnv(t, adminOptions{tcp: true, extra: echoPaths})
	const requests = 6
	for range requests {
		resp, err := a.client(false).Post(a.url("/echo"), "text/plain", strings.NewReader("0123456789"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	a.cluster.At(2).Node.SetDatabaseDown(true)
	deadline := time.Now().Add(30 * time.Second)
	var down admin.ServerStatus
	for {
		down = serverByName(t, a.status(t), "keycloak3")
		if down.Health != "up" && down.DowntimeSeconds > 0 && down.Reason != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keycloak3 never went down: %+v", down)
		}
		time.Sleep(100 * time.Millisecond) // polling the status: no event for a health round
	}
	if down.Downs != 1 || down.LastDown == nil || len(down.History) == 0 || down.History[len(down.History)-1].OK {
		t.Fatalf("keycloak3 history: downs %d, last down %v, history %+v", down.Downs, down.LastDown, down.History)
	}
	mustCLI(t, "drain", "keycloak2", "-s", a.socket)

	// CSV: the header, one row per server, the totals.
	resp, err := http.Get("http://" + a.tcp + "/stats.csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("stats.csv: %v, %s", err, resp.Header.Get("Content-Type"))
	}
	if len(rows) != 5 || !slices.Equal(rows[0], admin.CSVHeader) || rows[4][0] != "TOTAL" {
		t.Fatalf("stats.csv rows: %q", rows)
	}
	col := func(name string) int { return slices.Index(admin.CSVHeader, name) }
	sum := func(name string) (s int) {
		for _, r := range rows[1:4] {
			v, _ := strconv.Atoi(r[col(name)])
			s += v
		}
		return s
	}
	for _, c := range []string{"requests", "resp_2xx", "bytes_in", "bytes_out", "downs"} {
		if got := rows[4][col(c)]; got != strconv.Itoa(sum(c)) {
			t.Errorf("TOTAL %s = %s, want the sum %d", c, got, sum(c))
		}
	}
	if sum("resp_2xx") != requests || sum("bytes_in") != 10*requests || rows[3][col("downs")] != "1" || rows[3][col("health")] != "down" {
		t.Errorf("stats.csv: %q", rows)
	}

	page := "http://" + a.tcp + "/stats#token=" + a.token
	dom := chromium(t, page, "--dump-dom")
	for _, want := range []string{`id="total"`, `Download CSV`, `class="fail"`, `class="pass"`, `never down`, `1× down`,
		`id="server-keycloak3" data-health="down"`, `class="st admin a-drain">drain<`, `passes in a row`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "✓/") {
		t.Error("page still shows the cryptic ✓/✗ counts")
	}
	row := dom[strings.Index(dom, `id="server-keycloak3"`):]
	row = row[:strings.Index(row, "</tr>")]
	// The failure is given once: as the health reason (the last check's
	// own text stays in a tooltip).
	text := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(row, " ")
	if c := strings.Count(text, "DOWN since"); c != 1 || strings.Count(row, `class="sub reason"`) != 1 {
		t.Errorf("keycloak3's failure appears %d times in its row:\n%s", c, row)
	}

	out := os.Getenv("KCLB_TEST_ARTIFACTS")
	for _, size := range []string{"1280,900", "390,1800"} {
		shot := filepath.Join(t.TempDir(), "stats.png")
		chromium(t, page, "--screenshot="+shot, "--window-size="+size, "--hide-scrollbars")
		b, err := os.ReadFile(shot)
		if err != nil || len(b) < 1000 || !strings.HasPrefix(string(b), "\x89PNG") {
			t.Fatalf("screenshot at %s: %d bytes, %v", size, len(b), err)
		}
		if out != "" {
			os.MkdirAll(out, 0o755)
			os.WriteFile(filepath.Join(out, "stats-"+strings.Split(size, ",")[0]+".png"), b, 0o644)
		}
	}
}
