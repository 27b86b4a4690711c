package health

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseHealth(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr bool
		up      bool
		failing string
		since   string
	}{
		{name: "ready up", body: bodyReadyUp, up: true},
		{name: "ready down", body: bodyReadyDown, failing: dbCheckName, since: failingSince},
		{name: "no checks", body: bodyNoChecks, up: true},
		{name: "starting", body: bodyStarting, failing: "Keycloak Initialized"},
		{name: "old db check name", body: `{"status":"UP","checks":[{"name":"Keycloak database connections health check","status":"UP"}]}`, up: true},
		{name: "status up but a check down", body: `{"status":"UP","checks":[{"name":"a","status":"DOWN"}]}`, failing: "a"},
		{name: "down with no failing check", body: `{"status":"DOWN","checks":[]}`},
		{name: "checks missing", body: `{"status":"UP"}`, up: true},
		{name: "whitespace", body: " {\"status\" : \"UP\", \"checks\" : [ ] }\n", up: true},
		{name: "empty", body: ``, wantErr: true},
		{name: "truncated", body: `{"status":"UP","checks":[`, wantErr: true},
		{name: "trailing data", body: bodyReadyUp + `{}`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "array", body: `[]`, wantErr: true},
		{name: "unknown status", body: `{"status":"MAYBE"}`, wantErr: true},
		{name: "lowercase status", body: `{"status":"up"}`, wantErr: true},
		{name: "status not a string", body: `{"status":1}`, wantErr: true},
		{name: "check without name", body: `{"status":"UP","checks":[{"status":"UP"}]}`, wantErr: true},
		{name: "check bad status", body: `{"status":"UP","checks":[{"name":"a","status":"x"}]}`, wantErr: true},
		{name: "html error page", body: `<html><body>502</body></html>`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseHealth([]byte(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if r.Up() != tc.up {
				t.Errorf("Up() = %v, want %v", r.Up(), tc.up)
			}
			name, since, _ := r.Failing()
			if name != tc.failing || since != tc.since {
				t.Errorf("Failing() = %q, %q; want %q, %q", name, since, tc.failing, tc.since)
			}
			if !r.Up() && r.Reason() == "" {
				t.Error("empty Reason for a report that is not up")
			}
		})
	}
}

func TestReasonIsOneSafeLine(t *testing.T) {
	body := `{"status":"DOWN","checks":[{"name":"evil\nname` + strings.Repeat("x", 500) + `","status":"DOWN","data":{"Failing since":"now\r\nInjected: yes"}}]}`
	r, err := ParseHealth([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	reason := r.Reason()
	if strings.ContainsAny(reason, "\r\n") {
		t.Fatalf("reason has a line break: %q", reason)
	}
	if len(reason) > 2*maxField+64 {
		t.Fatalf("reason not clipped: %d bytes", len(reason))
	}
}

func FuzzParseHealth(f *testing.F) {
	for _, seed := range []string{
		bodyReadyUp, bodyReadyDown, bodyNoChecks, bodyStarting, bodyStarted,
		`{"status":"UP"}`, `{"status":"DOWN","checks":[{"name":"a","status":"DOWN","data":{"Failing since":1}}]}`,
		``, `null`, `{`, `{"status":"UP","checks":[{"name":"` + strings.Repeat("é", 100) + `","status":"DOWN"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseHealth(body)
		if err != nil {
			return
		}
		if r.Status != statusUp && r.Status != statusDown {
			t.Fatalf("accepted status %q", r.Status)
		}
		name, _, failing := r.Failing()
		if r.Up() && failing {
			t.Fatalf("Up report with failing check %q", name)
		}
		if strings.ContainsAny(r.Reason(), "\r\n") {
			t.Fatalf("multi-line reason %q", r.Reason())
		}
		// Round trip: re-encoding and parsing gives the same verdict.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal accepted report: %v", err)
		}
		r2, err := ParseHealth(b)
		if err != nil {
			t.Fatalf("re-parse %s: %v", b, err)
		}
		if r2.Up() != r.Up() || r2.Reason() != r.Reason() {
			t.Fatalf("round trip changed verdict: %q vs %q", r.Reason(), r2.Reason())
		}
	})
}

func TestParseClusterSize(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    ClusterSample
		wantErr error
		anyErr  bool
	}{
		{name: "micrometer float", text: "# HELP vendor_cluster_size The size of the cluster\n# TYPE vendor_cluster_size gauge\nvendor_cluster_size{cluster=\"ISPN\",node=\"node1\"} 3.0\n", want: ClusterSample{Cluster: "ISPN", Node: "node1", Size: 3}},
		{name: "label order and spaces", text: "vendor_cluster_size{ node = \"kc-1\" , cluster=\"c\", } 2", want: ClusterSample{Cluster: "c", Node: "kc-1", Size: 2}},
		{name: "escaped label", text: `vendor_cluster_size{cluster="a\"b",node="n\\1"} 1 1700000000000`, want: ClusterSample{Cluster: `a"b`, Node: `n\1`, Size: 1}},
		{name: "no labels", text: "vendor_cluster_size 4\n", want: ClusterSample{Size: 4}},
		{name: "other metrics first", text: "vendor_cluster_size_total 9\nhttp_requests 3\nvendor_cluster_size{node=\"x\"} 5.0\n", want: ClusterSample{Node: "x", Size: 5}},
		{name: "absent", text: "http_requests 3\n", wantErr: ErrNoClusterSize},
		{name: "empty", text: "", wantErr: ErrNoClusterSize},
		{name: "fraction", text: "vendor_cluster_size 2.5", anyErr: true},
		{name: "negative", text: "vendor_cluster_size -1", anyErr: true},
		{name: "NaN", text: "vendor_cluster_size NaN", anyErr: true},
		{name: "unterminated labels", text: "vendor_cluster_size{node=\"x\" 3", anyErr: true},
		{name: "unquoted label", text: "vendor_cluster_size{node=x} 3", anyErr: true},
		{name: "no value", text: "vendor_cluster_size{node=\"x\"}", anyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseClusterSize(strings.NewReader(tc.text))
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			case tc.anyErr:
				if err == nil {
					t.Fatalf("parsed %+v, want an error", got)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseClusterSize(f *testing.F) {
	for _, seed := range []string{
		"vendor_cluster_size{cluster=\"ISPN\",node=\"node1\"} 3.0\n",
		"vendor_cluster_size 1",
		"vendor_cluster_size{node=\"a\\\"\"} 2 123",
		"# TYPE vendor_cluster_size gauge\n",
		"vendor_cluster_size{",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		got, err := ParseClusterSize(strings.NewReader(string(text)))
		if err != nil {
			return
		}
		if got.Size < 0 {
			t.Fatalf("negative size %d", got.Size)
		}
	})
}
