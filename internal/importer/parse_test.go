package importer

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseHAProxy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Section
		wantErr string
	}{
		{
			name: "sections and comments",
			in:   "# top\nglobal\n    daemon # trailing\n\n  maxconn 10\nbackend be1\nserver a 10.0.0.1:80 check\n",
			want: []Section{
				{Kind: "global", Line: 2, Lines: []Line{{3, []string{"daemon"}}, {5, []string{"maxconn", "10"}}}},
				{Kind: "backend", Name: "be1", Line: 6, Lines: []Line{{7, []string{"server", "a", "10.0.0.1:80", "check"}}}},
			},
		},
		{
			name: "quotes and escapes",
			in:   "frontend f\n  http-response set-header X-A \"1; mode=block\" 'x y' a\\ b c\"d e\"f \"q\\\"#\" '#'\n",
			want: []Section{{Kind: "frontend", Name: "f", Line: 1, Lines: []Line{{2, []string{
				"http-response", "set-header", "X-A", "1; mode=block", "x y", "a b", "cd ef", `q"#`, "#"}}}}},
		},
		{
			name: "directive before any section",
			in:   "maxconn 5\r\nglobal\r\n",
			want: []Section{{Lines: []Line{{1, []string{"maxconn", "5"}}}}, {Kind: "global", Line: 2}},
		},
		{name: "unterminated double quote", in: "global\n  log \"stdout\n", wantErr: "line 2: unterminated \" quote"},
		{name: "unterminated single quote", in: "global\n\n  log 'x\n", wantErr: "line 3: unterminated ' quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHAProxy([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Sections, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", got.Sections, tt.want)
			}
		})
	}
}

// render prints a keepalived tree compactly: "line:args{...}".
func render(ns []*Node) string {
	var parts []string
	for _, n := range ns {
		s := fmt.Sprintf("%02d:%s", n.Line, strings.Join(n.Args, " "))
		if n.HasBlock {
			s += "{" + render(n.Block) + "}"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ";")
}

func TestParseKeepalived(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{
			name: "nested blocks",
			in:   "vrrp_instance VI_1 {\n  state MASTER\n  authentication {\n    auth_pass x\n  }\n  virtual_ipaddress {\n 203.0.113.100/24 dev eth0\n }\n}\n",
			want: "01:vrrp_instance VI_1{02:state MASTER;03:authentication{04:auth_pass x};06:virtual_ipaddress{07:203.0.113.100/24 dev eth0}}",
		},
		{
			name: "comments and quotes",
			in:   "! comment\nvrrp_script chk { # c\n  script \"/bin/curl -f http://x/ || exit 1\"\n  weight -2 ! c\n  notify a!b\n}\n",
			want: "02:vrrp_script chk{03:script /bin/curl -f http://x/ || exit 1;04:weight -2;05:notify a!b}",
		},
		{
			name: "braces without spaces and on the next line",
			in:   "a{b}\nc\n{\nd 1}\ne {}\n",
			want: "01:a{01:b};02:c{04:d 1};05:e{}",
		},
		{
			name: "quoted braces are words",
			in:   "notify_master \"/bin/x {\" \"}\"\n",
			want: "01:notify_master /bin/x { }",
		},
		{name: "unexpected close", in: "a {\n}\n}\n", wantErr: "line 3: unexpected \"}\""},
		{name: "unclosed", in: "x\nvrrp_instance V {\n state MASTER\n", wantErr: "line 2: \"vrrp_instance V\" block is not closed"},
		{name: "unterminated quote", in: "a \"b\n", wantErr: "line 1: unterminated quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeepalived([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r := render(got); r != tt.want {
				t.Fatalf("got  %s\nwant %s", r, tt.want)
			}
		})
	}
}

func TestParseHAProxyTime(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"default unit ms", "5000", 5 * time.Second, false},
		{"ms", "50000ms", 50 * time.Second, false},
		{"seconds", "30s", 30 * time.Second, false},
		{"minutes", "2m", 2 * time.Minute, false},
		{"hours", "1h", time.Hour, false},
		{"days", "1d", 24 * time.Hour, false},
		{"microseconds", "1500us", 1500 * time.Microsecond, false},
		{"overflow", "999999999999d", 0, true},
		{"bad unit", "5x", 0, true},
		{"no number", "s", 0, true},
		{"negative", "-5s", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHAProxyTime(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseHAProxyTime(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
