package importer

import (
	"os"
	"testing"

	"github.com/BurntSushi/toml"
)

// checkTOML fails when an Import result is not valid TOML.
func checkTOML(t *testing.T, r *Result) {
	var m map[string]any
	if _, err := toml.Decode(string(r.Config), &m); err != nil {
		t.Fatalf("output is not TOML: %v\n%s", err, r.Config)
	}
}

func FuzzParseHAProxy(f *testing.F) {
	if seed, err := os.ReadFile("testdata/haproxy.cfg"); err == nil {
		f.Add(seed)
	}
	f.Add([]byte("global\n maxconn 1\nfrontend f\n bind :::443,1.2.3.4:80 ssl crt a.pem alpn h2\n redirect scheme https code 301 if x\n default_backend b\nbackend b\n cookie AUTH_SESSION_ID insert maxlife 1h\n default-server inter 3s fall 2 rise 1 port 9000 weight 10\n server \"a b\" ::1:8080 check weight 0 backup\n"))
	f.Add([]byte("listen l\n bind *:80\n server s 1.2.3.4\n stats enable\n"))
	f.Add([]byte("frontend f\n bind :443 ssl crt /a.pem\n bind :::443 v4v6 ssl crt /a.pem\n acl p path_beg /realms/\n acl i src 10.0.0.0/8 ::1 x\n http-request deny if !p !i\n http-request deny if { path_beg /admin } ! { src 1.2.3.4 } or x\n http-request deny unless {\nlisten stats\n bind 127.0.0.1:8404\n stats auth a:b\n"))
	f.Add([]byte("frontend f\n http-response set-header X-A \"unterminated\n"))
	f.Add([]byte("defaults\n timeout client 1d\n timeout check 999999999999s\n option httpchk\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHAProxy(data)
		if err != nil {
			return
		}
		for _, s := range h.Sections {
			for _, l := range s.Lines {
				if len(l.Args) == 0 {
					t.Fatalf("empty directive at line %d", l.Num)
				}
			}
		}
		if len(data) == 0 {
			return
		}
		r, err := Import(Source{Name: "haproxy.cfg", Data: data}, nil)
		if err != nil {
			t.Fatalf("Import failed after ParseHAProxy succeeded: %v", err)
		}
		checkTOML(t, r)
	})
}

func FuzzParseKeepalived(f *testing.F) {
	if seed, err := os.ReadFile("testdata/keepalived.conf"); err == nil {
		f.Add(seed)
	}
	f.Add([]byte("global_defs { router_id \"x\ty\" vrrp_version 3 vrrp_garp_master_delay 1.5 }\nvrrp_script s {\n weight 7\n}\nvrrp_instance V\n{\n priority 250 advert_int 0.015\n track_script { s weight -300 missing }\n virtual_ipaddress { ::1 fe80::1/64 dev x 1.2.3.4 }\n unicast_peer { 1.2.3.4 x }\n authentication { auth_type AH }\n nopreempt\n}\n"))
	f.Add([]byte("a {\n}\n}\n"))
	f.Add([]byte("! c\n# c\n{ }"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseKeepalived(data); err != nil {
			return
		}
		if len(data) == 0 {
			return
		}
		r, err := Import(Source{}, &Source{Name: "keepalived.conf", Data: data})
		if err != nil {
			t.Fatalf("Import failed after ParseKeepalived succeeded: %v", err)
		}
		checkTOML(t, r)
	})
}
